"""Diagnostic codes the codemod emits (documented in README.md, "Diagnostics")."""

from __future__ import annotations

from xgrad_rewrite.codemod.api import Diagnostic, Severity

CLOSURE_STEP = "XG101"  # optimizer.step(closure): closure-driven, not patched
UNSUPPORTED_OPTIMIZER = "XG102"  # built from a torch.optim class with no runtime rule
WRAPPER_STEP = "XG103"  # backward+step in one wrapper call: predict only, step hook restores
NO_STEP = "XG104"  # a backward with no optimizer step after it in the same function
NO_FORWARD = "XG105"  # no forward found that the loss depends on: cannot place predict
FILTERED = "XG106"  # skipped: not among the --optimizer names
NAME_TAKEN = "XG107"  # `xgrad` already names something else: another alias used
MANUAL = "XG110"  # the step's function already calls the runtime for that optimizer
UNPLACED = "XG109"  # the file has calls this run would not put back: left unchanged
FX_NO_MODEL = "XG108"  # --mode fx: no `<opt> = torch.optim.X(<model>.parameters(), ...)` found

SEVERITY: dict[str, Severity] = {
    CLOSURE_STEP: "warning",
    UNSUPPORTED_OPTIMIZER: "warning",
    WRAPPER_STEP: "info",
    NO_STEP: "warning",
    NO_FORWARD: "warning",
    FILTERED: "info",
    NAME_TAKEN: "info",
    FX_NO_MODEL: "warning",
    UNPLACED: "warning",
    MANUAL: "info",
}


def diagnostic(code: str, line: int, column: int, message: str) -> Diagnostic:
    return Diagnostic(line=line, column=column, code=code, message=message, severity=SEVERITY[code])
