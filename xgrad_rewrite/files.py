"""Files on disk: which ones to patch, and reading/writing them without touching other bytes.

The codemod works on ``str``; this module owns the bytes. Python sources are decoded with the
encoding PEP 263 says (cookie or BOM, else UTF-8) and without newline translation, so CRLF files
and encoding cookies come back exactly as they were. Writes are atomic (temp file in the same
directory, then ``os.replace``) and keep the file's mode, so an interrupted run never leaves a
half-written script.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".py", ".ipynb")

# Directories never worth descending into (black/ruff skip the same); venvs are also recognised
# by their ``pyvenv.cfg`` whatever their name.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        "build",
        "node_modules",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)


def is_notebook(path: str) -> bool:
    return path.endswith(".ipynb")


def discover(paths: tuple[str, ...], exclude: re.Pattern[str] | None) -> Iterator[str]:
    """Yield the files to patch, in a deterministic order, each once.

    Files named on the command line are always taken (like black: naming a file asks for it);
    directories are walked for ``*.py``/``*.ipynb``, skipping :data:`SKIP_DIRS`, venvs and paths
    matching ``exclude``. ``exclude`` is searched in ``/``-separated paths relative to the named
    directory, with a leading ``/`` and, for directories, a trailing ``/`` (black's convention,
    so ``/build/`` or ``_pb2\\.py$`` work as expected).
    """
    seen: set[str] = set()
    for path in paths:
        if path == "-" or not os.path.isdir(path):
            key = path if path == "-" else os.path.normpath(path)
            if key not in seen:
                seen.add(key)
                yield path
            continue
        for found in _walk(Path(path), exclude):
            key = os.path.normpath(found)
            if key not in seen:
                seen.add(key)
                yield found


def _walk(root: Path, exclude: re.Pattern[str] | None) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        prefix = "/" if rel == "." else f"/{rel}/"
        kept = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if name in SKIP_DIRS or os.path.exists(os.path.join(full, "pyvenv.cfg")):
                continue
            if exclude is not None and exclude.search(f"{prefix}{name}/"):
                continue
            kept.append(name)
        dirnames[:] = kept  # os.walk descends only into what is left, in sorted order
        for name in sorted(filenames):
            if not name.endswith(SUFFIXES):
                continue
            if exclude is not None and exclude.search(f"{prefix}{name}"):
                continue
            yield os.path.join(dirpath, name)


@dataclass(frozen=True)
class Source:
    """A decoded file and how to encode it back."""

    text: str
    encoding: str


def decode(data: bytes, notebook: bool = False) -> Source:
    """Bytes to text, keeping newlines (``bytes.decode`` never translates them).

    Python files: PEP 263 via :func:`tokenize.detect_encoding` (a BOM gives ``utf-8-sig``, which
    puts the BOM back on encode). Notebooks are JSON, always UTF-8.
    """
    if notebook:
        encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    else:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return Source(data.decode(encoding), encoding)


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path``'s content with ``data`` in one rename, keeping its permission bits.

    A symlink is followed (its target is rewritten, the link stays a link).
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    mode = stat.S_IMODE(os.stat(target).st_mode)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
