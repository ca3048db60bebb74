"""Runs patched fixture scripts in one process and records every top-level module forward.

For each forward of a module that is not called from inside another module's forward, it
records whether grad mode was on, whether an optimizer owning the module's parameters had
stepped and was predicted (``xgrad_rewrite.runtime.is_predicted``), and whether any optimizer
was predicted. ``xgrad.predict`` is wrapped to count calls that actually moved weights.
The run-time verifier (``xgrad_rewrite.runtime.verify``, what ``XGRAD_VERIFY=1`` turns on) watches
each script too: its findings are in the result as ``findings`` (``Finding.as_dict()``).

Usage: python fixture_harness.py OUT.json SCRIPT...
"""

from __future__ import annotations

import json
import sys
import weakref

import torch
from run_scripts import run as run_script  # beside this file (sys.path[0] when run by path)

import xgrad_rewrite.runtime as xgrad
from xgrad_rewrite.runtime import verify

optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
_init = torch.optim.Optimizer.__init__


def _tracking_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _init(self, *args, **kwargs)
    optimizers.add(self)


torch.optim.Optimizer.__init__ = _tracking_init  # type: ignore[method-assign]

state = {"depth": 0, "records": [], "predict_calls": 0, "moved": 0}


def _params(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _pre(module, args):  # type: ignore[no-untyped-def]
    if state["depth"] == 0:
        mine = {id(p) for p in module.parameters()}
        owners = [o for o in list(optimizers) if mine & _params(o)]
        state["records"].append(
            {
                "module": type(module).__name__,
                "fx": type(module.__dict__.get("forward")).__name__ == "PredictiveForward",
                "grad": torch.is_grad_enabled(),
                "owned": bool(owners),
                "stepped": any(len(o.state) > 0 for o in owners),
                "predicted": any(xgrad.is_predicted(o) for o in owners),
                "any_predicted": any(xgrad.is_predicted(o) for o in list(optimizers)),
            }
        )
    state["depth"] += 1


def _post(module, args, output):  # type: ignore[no-untyped-def]
    state["depth"] -= 1


_predict = xgrad.predict


def _counting_predict(optimizer, *args, **kwargs):  # type: ignore[no-untyped-def]
    if optimizer is None:  # an optional optimizer not configured: predict does nothing
        state["predict_calls"] += 1
        return _predict(optimizer, *args, **kwargs)
    before = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]
    result = _predict(optimizer, *args, **kwargs)
    after = [p.detach() for g in optimizer.param_groups for p in g["params"]]
    state["predict_calls"] += 1
    state["moved"] += any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    return result


def run(script: str) -> dict:
    state.update(depth=0, records=[], predict_calls=0, moved=0)
    verify.reset()
    error = run_script(script)["error"]
    findings = [f.as_dict() for f in verify.report()]
    result = {key: state[key] for key in ("records", "predict_calls", "moved")}
    return result | {"error": error, "findings": findings}


def main() -> None:
    out, scripts = sys.argv[1], sys.argv[2:]
    xgrad.predict = _counting_predict
    verify.enable(warn=False)
    verify.ignore_file(__file__)  # places and names come from the scripts, not our wrapper
    torch.nn.modules.module.register_module_forward_pre_hook(_pre)
    torch.nn.modules.module.register_module_forward_hook(_post, always_call=True)
    results = {script: run(script) for script in scripts}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
