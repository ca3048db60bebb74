"""Rewrite a traced graph: each read of a predicted parameter becomes `p − c·d` (eq. 31)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

ROOT = "_root"  # the user's model, a submodule of the GraphModule: reads stay live


@dataclass(frozen=True)
class Read:
    """One predicted parameter read by the graph, with the names of its `d` and `c` tensors."""

    param: nn.Parameter
    d: str
    c: str


def resolve(model: nn.Module, target: str) -> object:
    return functools.reduce(getattr, target.split("."), model)


def predict_reads(
    graph: fx.Graph,
    model: nn.Module,
    coefficient_of: Mapping[int, str],
) -> list[Read]:
    """Replace every `get_attr` of a parameter in `coefficient_of` (by id) with `p − c·d`.

    One prediction per Parameter object: tied weights (two names, one object) and a module
    called twice share one `addcmul` node. `coefficient_of[id(p)]` names the `c` tensor of
    p's param group. Every other `get_attr`/`call_module` target is re-rooted on ROOT, so
    buffers (BatchNorm statistics) and leaf modules are the model's own, read at call time.
    """
    first: dict[int, fx.Node] = {}
    for node in list(graph.nodes):
        if node.op not in ("get_attr", "call_module"):
            continue
        value = resolve(model, node.target) if node.op == "get_attr" else None
        if isinstance(value, nn.Parameter) and id(value) in coefficient_of:
            kept = first.setdefault(id(value), node)
            if kept is not node:
                node.replace_all_uses_with(kept)
                graph.erase_node(node)
                continue
        node.target = f"{ROOT}.{node.target}"

    reads = []
    for key, node in first.items():
        param = resolve(model, node.target.removeprefix(ROOT + "."))
        assert isinstance(param, nn.Parameter)
        base = node.target.removeprefix(ROOT + ".").replace(".", "_")
        read = Read(param=param, d=f"xgrad_d_{base}", c=coefficient_of[key])
        with graph.inserting_after(node):
            c = graph.get_attr(read.c)
        with graph.inserting_after(c):
            d = graph.get_attr(read.d)
        with graph.inserting_after(d):
            predicted = graph.create_node(
                "call_function",
                torch.addcmul,
                (node, c, d),
                {"value": -1},
                name=f"{base}_predicted",
            )
        node.replace_all_uses_with(predicted, delete_user_cb=lambda u, p=predicted: u is not p)
        reads.append(read)
    graph.lint()
    return reads
