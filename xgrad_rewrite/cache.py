"""Files already in the target state, remembered between runs (black's cache, for this tool).

A pre-commit hook or a CI ``--check`` runs over the same unchanged files again and again; a file
whose bytes are those it had when a run left it (or made it) patched with the same options needs
no codemod, and answering from the cache never imports libcst.

One JSON file per set of options, ``<dir>/<version>/cache.<key>.json``, mapping each resolved
path to ``[mtime_ns, size, sha256]``. ``<dir>`` is ``$XGRAD_REWRITE_CACHE_DIR``, else
``$XDG_CACHE_HOME/xgrad-rewrite``, else ``~/.cache/xgrad-rewrite``. The key covers the options
and the stat of the codemod's own sources, so an upgraded (or edited, in an editable install)
codemod never answers with an old verdict. A hit needs the same size and the same sha256 (a
touched but identical file is still a hit). A corrupt or unreadable cache counts as empty;
writes merge with what is on disk and replace the file in one rename, so concurrent runs (pre-
commit starts several) can lose an entry but never leave a broken file. JSON, not pickle: a
cache file is data, never code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from xgrad_rewrite import __version__
from xgrad_rewrite.codemod.api import Options

Entry = tuple[int, int, str]  # (mtime_ns, size, sha256 hex)


def cache_root() -> Path:
    """Where caches live (see the module docstring); one subdirectory per package version."""
    explicit = os.environ.get("XGRAD_REWRITE_CACHE_DIR")
    if explicit:
        base = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "xgrad-rewrite"
    return base / __version__


def options_key(options: Options) -> str:
    """A short hash of everything besides a file's bytes that decides the codemod's output."""
    codemod = Path(__file__).with_name("codemod")
    stats = sorted(
        (p.relative_to(codemod).as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
        for p in codemod.rglob("*.py")  # sub-packages included: any edit of the codemod counts
    )
    material = repr((__version__, options, stats)).encode()
    return hashlib.sha256(material).hexdigest()[:16]


def entry_for(path: str) -> tuple[Entry, bytes] | None:
    """The file's current entry (and bytes), or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest()), data


class Cache:
    """The entries for one set of options; read once per run, written once at its end."""

    def __init__(self, file: Path | None, entries: dict[str, Entry]) -> None:
        self.file = file
        self.entries = entries
        self._dirty: dict[str, Entry | None] = {}  # None: forget the path

    @classmethod
    def load(cls, options: Options) -> Cache:
        """The cache for ``options``; one that is never read or written when there is no
        place for it (no home directory, unreadable package files)."""
        try:
            file = cache_root() / f"cache.{options_key(options)}.json"
        except (RuntimeError, OSError):  # RuntimeError: Path.home() without a home
            return cls(None, {})
        return cls(file, _read(file))

    def is_done(self, path: str) -> bool:
        """Whether ``path`` has the bytes it had when a run left it in the target state."""
        key = _key(path)
        old = self.entries.get(key)
        if old is None:
            return False
        try:
            if os.stat(path).st_size != old[1]:
                return False
        except OSError:
            return False
        current = entry_for(path)
        return current is not None and current[0][2] == old[2]

    def remember(self, path: str) -> None:
        """``path`` is now in the target state (left so, or just written so)."""
        current = entry_for(path)
        if current is not None:
            self._dirty[_key(path)] = current[0]

    def forget(self, path: str) -> None:
        if _key(path) in self.entries:
            self._dirty[_key(path)] = None

    def write(self) -> None:
        """Merge this run's changes into the file on disk, atomically; errors are ignored (a
        cache that cannot be written only makes the next run slower)."""
        if not self._dirty or self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            # Entries of files that are gone (temp dirs, deleted scripts) are dropped here.
            entries = {k: v for k, v in _read(self.file).items() if os.path.exists(k)}
            for key, entry in self._dirty.items():
                if entry is None:
                    entries.pop(key, None)
                else:
                    entries[key] = entry
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".cache.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entries, f, separators=(",", ":"))
                os.replace(tmp, self.file)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except OSError:
            return
        self._dirty.clear()


def _key(path: str) -> str:
    return os.path.realpath(path)


def _read(file: Path) -> dict[str, Entry]:
    """The entries in ``file``; anything unreadable or malformed counts as no entries."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    entries: dict[str, Entry] = {}
    for key, value in raw.items():
        if (
            isinstance(value, list)
            and len(value) == 3
            and isinstance(value[0], int)
            and isinstance(value[1], int)
            and isinstance(value[2], str)
        ):
            entries[key] = (value[0], value[1], value[2])
    return entries
