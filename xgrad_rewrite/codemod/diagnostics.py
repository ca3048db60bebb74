"""Every diagnostic code the codemod emits, in one table: severity, message, one line of help.

A code is emitted only through :func:`message` / :func:`diagnostic`, which read this table, so a
code's severity cannot differ between the places that emit it, and README's diagnostics table is
checked against :data:`CODES` by a test (``tests/codemod/test_diagnostics_registry.py``).
Adding a code is adding one entry here and one row there.

``XG1xx`` are about training loops (the analysis), ``XG2xx`` about framework Trainer calls that
get a callback (``edit/trainer_callback.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from xgrad_rewrite.codemod.api import Diagnostic, Severity


@dataclass(frozen=True)
class Code:
    """One diagnostic: ``template`` is formatted with the fields the emitting site knows."""

    code: str
    severity: Severity
    template: str
    help: str


CLOSURE_STEP = "XG101"
UNSUPPORTED_OPTIMIZER = "XG102"
WRAPPER_STEP = "XG103"
NO_STEP = "XG104"
NO_FORWARD = "XG105"
FILTERED = "XG106"
NAME_TAKEN = "XG107"
FX_NO_MODEL = "XG108"
UNPLACED = "XG109"
MANUAL = "XG110"
UNBOUND = "XG111"
NO_GRAD_ON_PREDICTED = "XG112"
NOT_PROVEN = "XG113"
BESIDE_OPTIMIZER = "XG114"
STEP_WITHOUT_BACKWARD = "XG115"
STORED_OUTPUTS = "XG116"
CONDITIONAL_BACKWARD = "XG117"
TRAINER_STARRED_ARGS = "XG201"
TRAINER_NOT_A_LIST = "XG202"
TRAINER_NAME_TAKEN = "XG203"
TRAINER_MIXED_FRAMEWORKS = "XG204"

CODES: dict[str, Code] = {
    c.code: c
    for c in (
        Code(
            CLOSURE_STEP,
            "warning",
            "{optimizer}.step(closure) runs forward and backward inside the optimizer; "
            "a closure-driven loop cannot be patched, left unchanged",
            "`opt.step(closure)`: the optimizer runs forward and backward itself; loop not patched",
        ),
        Code(
            UNSUPPORTED_OPTIMIZER,
            "warning",
            "{optimizer} is built from {cls}, which has no XGrad rule; {outcome}",
            "optimizer built from a `torch.optim` class with no XGrad rule (e.g. `LBFGS`); loop "
            "not patched",
        ),
        Code(
            WRAPPER_STEP,
            "info",
            "{wrapper}(...) does backward and step of {optimizer} together: only xgrad.predict is "
            "inserted; the runtime's step pre-hook restores the weights before that step",
            "backward and step in one wrapper call: predict only, the runtime's step hook restores",
        ),
        Code(
            NO_STEP,
            "warning",
            "no optimizer step after this backward in the same function; not patched",
            "a backward with no optimizer step after it in the same function; not patched",
        ),
        Code(
            NO_FORWARD,
            "warning",
            "found no forward that the loss of this backward depends on in the loop of "
            "{optimizer}.step(); not patched",
            "no forward found that the loss depends on within the step's loop; not patched",
        ),
        Code(
            FILTERED,
            "info",
            "{optimizer} is not among the --optimizer names; {outcome}",
            "step skipped: its optimizer is not among the `--optimizer` names",
        ),
        Code(
            NAME_TAKEN,
            "info",
            "the name `{taken}` is already used in this file; imported as `{alias}`",
            "`xgrad` is already taken in the file; imported under another name",
        ),
        Code(
            FX_NO_MODEL,
            "warning",
            "--mode fx: found no `optimizer = torch.optim.X(model.parameters(), ...)` to wrap the "
            "model after; nothing inserted",
            "`--mode fx`: no `optimizer = torch.optim.X(model.parameters(), ...)` found to wrap "
            "after",
        ),
        Code(
            UNPLACED,
            "warning",
            "this run would not insert {call} (written by hand, or its step is no longer found); "
            "file left unchanged. Run --revert first to have xgrad-rewrite place the calls afresh",
            "the file has an `xgrad.predict`/`restore` call this run would not insert again "
            "(written by hand, or its step is gone): the whole file is left unchanged",
        ),
        Code(
            MANUAL,
            "info",
            "{optimizer} already calls the runtime by hand here; left as written",
            "the step's function already calls the runtime for that optimizer by hand; left as "
            "written",
        ),
        Code(
            UNBOUND,
            "warning",
            "{optimizer} may be unbound where xgrad.predict({optimizer}) would go (line {line}, "
            "before the forward): {why}; not patched",
            "the optimizer is not bound on every path to the forward (created under a condition, "
            "or by a loop after it); loop not patched",
        ),
        Code(
            NO_GRAD_ON_PREDICTED,
            "info",
            "this no-grad block sits between xgrad.predict({optimizer}) and the backward, so it "
            "runs on the predicted weights; move it before the training forward to keep it on "
            "the current ones",
            "a no-grad block (validation, logging) between the training forward and its backward "
            "runs on the predicted weights",
        ),
        Code(
            NOT_PROVEN,
            "warning",
            "{receiver}.step() follows this backward but is not shown to be an optimizer "
            "({why}); not patched",
            "several `.step()` receivers after one backward and none proven an optimizer: none "
            "patched",
        ),
        Code(
            BESIDE_OPTIMIZER,
            "info",
            "{receiver}.step() follows this backward beside a proven optimizer but is not shown "
            "to be one (a scheduler, a sampler?); not patched",
            "a `.step()` beside a proven optimizer's that is not shown to be an optimizer's; not "
            "patched",
        ),
        Code(
            STEP_WITHOUT_BACKWARD,
            "warning",
            "{optimizer}.step() has no backward before it in this function (the backward is in "
            "another function, or inside a closure); not patched",
            "an optimizer steps with no backward before it in the same function; not patched",
        ),
        Code(
            STORED_OUTPUTS,
            "warning",
            "the loss of {optimizer}.step() reads `{stored}`, filled at line {line} by code "
            "outside this loop (forwards stored for later, as in REINFORCE); predict cannot go "
            "before those forwards, not patched",
            "the loss reads outputs stored by forwards elsewhere (`policy.saved_log_probs`, "
            "`self.data`); loop not patched",
        ),
        Code(
            CONDITIONAL_BACKWARD,
            "info",
            "the backward of {optimizer} runs only `if {condition}`, the forward above it always: "
            "when the condition is false (evaluation through the same code) that forward runs on "
            "the predicted weights, which stay loaded until the next step",
            "the backward runs under a condition the forward does not (one function for training "
            "and evaluation): evaluation through it sees the predicted weights",
        ),
        Code(
            TRAINER_STARRED_ARGS,
            "warning",
            "Trainer(*args/**kwargs): add `{callback}` to its callbacks yourself",
            "a Trainer call with `*args`/`**kwargs` (they may already pass `callbacks`): callback "
            "not added",
        ),
        Code(
            TRAINER_NOT_A_LIST,
            "warning",
            "{how}: add `{callback}` to its callbacks yourself",
            "`callbacks=` is not a list literal, or is passed by position: callback not added",
        ),
        Code(
            TRAINER_NAME_TAKEN,
            "warning",
            "`{name}` already names something else in this file; add `{callback}` to the "
            "Trainer's callbacks yourself",
            "`XGradCallback` already names something else in the file: callback not added",
        ),
        Code(
            TRAINER_MIXED_FRAMEWORKS,
            "warning",
            "Trainers of two frameworks in one file; only those taking `{first}` were patched, "
            "add the other yourself",
            "Trainers of two frameworks in one file: only the first framework's calls are patched",
        ),
    )
}


def message(code: str, **fields: object) -> str:
    """The message of ``code`` with its fields filled in."""
    return CODES[code].template.format(**fields)


def diagnostic(code: str, line: int, column: int, text: str) -> Diagnostic:
    """A diagnostic at ``line``/``column`` with the registry's severity for ``code``."""
    return Diagnostic(
        line=line, column=column, code=code, message=text, severity=CODES[code].severity
    )
