"""A stand-in for the codemod in tests of CLI/notebook *mechanics* only.

It produces the contract's shapes (import, ``xgrad.predict(opt, s=N)`` before the forward,
``xgrad.restore(opt)`` before the step) for the simple ``loss = ...; loss.backward();
opt.step()`` loop, so those tests do not depend on the real codemod's placement decisions.
End-to-end tests use the real :func:`xgrad_rewrite.codemod.rewrite`.
"""

from __future__ import annotations

import ast
import re

from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result, StepReport

IMPORT = "import xgrad_rewrite.runtime as xgrad"
_OPT = re.compile(r"^\s*(\w+) = torch\.optim\.\w+\(")


def fake_rewrite(source: str, options: Options | None = None) -> Result:
    options = options or Options()
    try:
        ast.parse(source)
    except SyntaxError as e:
        raise ParseError(e.msg, e.lineno or 1, (e.offset or 1) - 1) from e
    lines = source.splitlines(keepends=True)
    if options.revert:
        kept = [
            ln
            for ln in lines
            if not ln.strip().startswith(("xgrad.predict(", "xgrad.restore("))
            and ln.strip() != IMPORT
        ]
        text = "".join(kept)
        return Result(text, text != source)
    nl = "\r\n" if "\r\n" in source else "\n"
    optimizers = [m.group(1) for ln in lines if (m := _OPT.match(ln))]
    if options.optimizers:
        optimizers = [o for o in optimizers if o in options.optimizers]
    out = list(lines)
    steps = []
    diagnostics = []
    for opt in optimizers:
        for n, ln in enumerate(out):
            if ln.strip() == f"{opt}.step()":
                indent = ln[: len(ln) - len(ln.lstrip())]
                b = next((k for k in range(n - 1, -1, -1) if ".backward()" in out[k]), None)
                f = next(
                    (k for k in range(n - 1, -1, -1) if out[k].strip().startswith("loss =")), None
                )
                if b is None or f is None:
                    diagnostics.append(Diagnostic(n + 1, len(indent), "XG101", "no backward"))
                    continue
                s = 1 if options.s is None else options.s  # None: keep the file's (1 here)
                predict = f"{indent}xgrad.predict({opt}, s={s}){nl}"
                if out[f - 1].strip().startswith(f"xgrad.predict({opt},"):
                    out[f - 1] = predict
                else:
                    out.insert(f, predict)
                    n += 1
                if not out[n - 1].strip().startswith("xgrad.restore("):
                    out.insert(n, f"{indent}xgrad.restore({opt}){nl}")
                steps.append(opt)
                break
    if steps and IMPORT + nl not in out:
        top = next(k for k, ln in enumerate(out + [""]) if not ln.startswith("#"))
        out.insert(top, IMPORT + nl)
    text = "".join(out)

    def line_of(opt: str, code: str) -> int:  # 1-based line in the output, like the codemod
        start = next(k for k, ln in enumerate(out) if ln.strip() == f"{opt}.step()")
        return next(k for k in range(start, -1, -1) if out[k].strip().startswith(code)) + 1

    reports = tuple(
        StepReport(
            opt,
            line_of(opt, "loss.backward()"),
            line_of(opt, f"{opt}.step()"),
            line_of(opt, f"xgrad.predict({opt},"),
            line_of(opt, f"xgrad.restore({opt})"),
        )
        for opt in steps
    )
    return Result(text, text != source, tuple(diagnostics), reports)
