"""libcst codemod inserting XGrad predict/restore calls into training loops (text -> text)."""

from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result, StepReport
from xgrad_rewrite.codemod.transform import rewrite

__all__ = ["Diagnostic", "Options", "ParseError", "Result", "StepReport", "rewrite"]
