"""``rewrite(source, options) -> Result``: revert, analyse, patch (pure text to text).

Every run starts from the file with earlier insertions removed, then inserts afresh: that makes
a second run a no-op, a new ``s`` update the calls in place, and ``revert`` exact.

The analysis (which steps, which optimizer, where the calls go) runs on the standard library's
:mod:`ast`; libcst, whose import alone costs more than a whole ``black --check``, is loaded only
to edit: to remove an earlier run's calls, to add a Trainer callback, or to write the new text.
A file that has none of those to do (the common ``--check`` of an unpatched script) is answered
from the analysis alone, and its new text is made only if asked for. Two more answers come from
the ast where they can be sure, else libcst decides: a patched file already exactly as this run
would leave it (:mod:`.inplace`), and a Trainer script whose only change is its callback
(:mod:`.trainers`).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.analysis.calls import Insertion, plan_calls
from xgrad_rewrite.codemod.analysis.find import Finder
from xgrad_rewrite.codemod.analysis.imports import our_aliases
from xgrad_rewrite.codemod.analysis.inplace import in_place
from xgrad_rewrite.codemod.analysis.lines import LineMap, report
from xgrad_rewrite.codemod.analysis.positions import Positions
from xgrad_rewrite.codemod.analysis.trainers import patched_cleanly, trainer_calls
from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result

if TYPE_CHECKING:
    import libcst as cst

_FRAMEWORKS = re.compile(r"transformers|lightning")  # every module trainers.TRAINERS names


def parse_ast(source: str) -> ast.Module:
    """The standard library's tree, or :class:`ParseError` with the position Python reports."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for "\d" in a string: not ours
            return ast.parse(source)
    except SyntaxError as error:
        column = max((error.offset or 1) - 1, 0)
        raise ParseError(error.msg, error.lineno or 1, column) from error
    except ValueError as error:  # null bytes (Python < 3.12)
        raise ParseError(str(error), 1, 0) from error


def parse(source: str) -> cst.Module:
    """libcst's tree, or :class:`ParseError` with the position Python itself reports."""
    import libcst as cst

    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise ParseError(error.message, error.raw_line, error.raw_column) from error


def rewrite(source: str, options: Options | None = None) -> Result:
    """``source`` with XGrad calls inserted (or removed, with ``options.revert``)."""
    options = options or Options()
    tree = parse_ast(source)
    if options.s is None:  # keep what an earlier run wrote
        options = replace(options, s=inserted.written_s(tree) or 1)
    callbacks = options.mode == "eager" and _may_build_a_trainer(source)
    if options.revert or inserted.CALLBACK in source:
        return _rewrite_with_libcst(source, tree, callbacks, options)
    earlier = bool(our_aliases(tree, Positions(source)))  # an earlier run's calls to take out
    if not earlier and not callbacks:
        return _patch(source, source, tree, None, [], [], options)  # the common case
    answer = None  # answers on the ast where it can be sure; else libcst decides
    if earlier and not callbacks:
        answer = in_place(source, options)
    elif callbacks and not earlier:
        answer = _callbacks_only(source, tree, options)
    return answer or _rewrite_with_libcst(source, tree, callbacks, options)


def _callbacks_only(source: str, tree: ast.Module, options: Options) -> Result | None:
    """An unpatched Trainer script whose only change is the callback, added to every Trainer
    call with nothing to report: the answer is "changed", and libcst is loaded only if the new
    text is asked for. None in any other case (the libcst path decides)."""
    finder = Finder(tree, source)
    calls = trainer_calls(finder)
    if not calls or len({integration for _, integration in calls}) > 1:
        return None
    if not all(patched_cleanly(call, integration) for call, integration in calls):
        return None
    if plan_calls(finder, options).plans:
        return None  # a training loop too: its calls and notes are placed after the callback
    return Result(lambda: _rewrite_with_libcst(source, tree, True, options).text, True)


def _may_build_a_trainer(source: str) -> bool:
    """Whether the file may call a framework's ``Trainer`` (a callback goes there). Those are
    recognised by what they were imported from, all ``transformers``/``lightning`` modules, so a
    file naming neither (a script with its own ``class Trainer``) never needs that pass."""
    return "Trainer" in source and _FRAMEWORKS.search(source) is not None


def _rewrite_with_libcst(
    source: str, tree: ast.Module, callbacks: bool, options: Options
) -> Result:
    """Take out an earlier run's calls (and Trainer callbacks), add callbacks, then patch."""
    from xgrad_rewrite.codemod.edit.revert import revert

    module, removed = revert(parse(source))
    if inserted.CALLBACK in source:
        from xgrad_rewrite.codemod.edit.trainer_callback import add_trainer_callbacks

        module = add_trainer_callbacks(module, options.s, revert=True)[0]
    if options.revert:
        text = module.code
        return Result(text=text, changed=text != source)

    diagnostics: list[Diagnostic] = []
    if callbacks:
        # Frameworks that own their loop (transformers/Lightning Trainer) get a callback; imported
        # only here because it needs libcst and its QualifiedNameProvider.
        from xgrad_rewrite.codemod.edit.trainer_callback import add_trainer_callbacks

        module, trainer_diagnostics = add_trainer_callbacks(module, options.s, revert=False)
        diagnostics.extend(trainer_diagnostics)
    text = module.code
    if text != source:
        tree = ast.parse(text)
    return _patch(source, text, tree, module, removed, diagnostics, options)


def _patch(
    source: str,
    text: str,
    tree: ast.Module,
    module: cst.Module | None,
    removed: list[tuple[str, str]],
    diagnostics: list[Diagnostic],
    options: Options,
) -> Result:
    """Analyse ``text`` (``source`` with earlier insertions removed; ``module`` its libcst tree,
    None when libcst was not needed so far) and insert the calls."""
    finder = Finder(tree, text)
    planned = plan_calls(finder, options)
    unplaced = Counter(removed) - Counter((i.kind, i.optimizer) for i in planned.calls)
    if unplaced:
        return _unplaced(source, unplaced, planned.alias)
    insertions = planned.insertions(tree)
    new_text = _new_text(text, tree, module, insertions)
    lines = LineMap(finder, insertions)
    shifted = [replace(d, line=lines.out(d.line)) for d in diagnostics]
    diagnostics, steps = report(finder, planned, lines, shifted)
    if module is None:  # nothing removed: any insertion changes the text
        changed = bool(insertions)
    else:
        assert isinstance(new_text, str)
        changed = new_text != source
    return Result(new_text if changed else source, changed, diagnostics, steps)


def _new_text(
    text: str, tree: ast.Module, module: cst.Module | None, insertions: list[Insertion]
) -> str | Callable[[], str]:
    """The patched text; made on demand when libcst has not been loaded yet."""
    if not insertions:
        return text

    def make() -> str:
        from xgrad_rewrite.codemod.edit.cstmap import locate
        from xgrad_rewrite.codemod.edit.patch import apply

        parsed = module if module is not None else parse(text)
        return apply(parsed, insertions, locate(parsed, tree)).code

    return make() if module is not None else make


def _unplaced(source: str, unplaced: Counter[tuple[str, str]], alias: str) -> Result:
    """A patched file with a call this run would not put back (written by hand, or its step
    is no longer found): stripping it would change what the script does, so leave every byte."""
    (kind, optimizer), *_ = unplaced
    needle = inserted.call_prefix(kind, optimizer)
    line = next((n for n, text in enumerate(source.splitlines(), 1) if needle in text), 1)
    message = codes.message(codes.UNPLACED, call=f"{alias}.{kind}({optimizer}, ...)")
    return Result(
        text=source,
        changed=False,
        diagnostics=(codes.diagnostic(codes.UNPLACED, line, 0, message),),
    )
