"""Which statements a loss depends on, and which of them run a forward of the trained model.

Names are tracked as dotted strings (``loss``, ``self.model``, ``outputs.loss``); a statement that
defines ``x`` satisfies a need for ``x`` or ``x.y``. This is a deliberately small, statement-level
def/use analysis: enough to tell the training forward from the evaluation forward, the logging and
the data loading around it (design.md, "Codemod contract").
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from xgrad_rewrite.codemod.blocks import Block, Item, Navigator, items_of

# Calls that move or reshape data rather than run a model: a statement made only of these is not
# a forward, so prediction need not start before it (it is harmless either way).
DATA_CALLS: frozenset[str] = frozenset(
    """to cuda cpu float half double long int bool bfloat16 view view_as reshape permute
    transpose unsqueeze squeeze flatten contiguous detach clone size numel item split chunk type
    pin_memory next iter len range enumerate zip isinstance items keys values get get_batch print
    format append extend repeat expand dim zero_grad train eval randn rand randint randn_like
    zeros zeros_like ones ones_like full tensor arange stack cat from_numpy as_tensor
    manual_seed time perf_counter min max abs round sorted list dict tuple set str
    getattr hasattr setattr update copy_ fill_ normal_ uniform_ random_ masked_fill split_
    numpy tolist parameters named_parameters state_dict load_state_dict modules children
    buffers named_modules requires_grad_""".split()
)
# Calls that prepare gradients for the step they belong to; restore goes before them.
PREP_CALLS: frozenset[str] = frozenset(
    {
        "unscale_",
        "clip_grad_norm_",
        "clip_grad_value_",
        "clip_grad_norm",
        "clip_grad_value",
        "clip_gradients",
        "dispatch_clip_grad",
    }
)
MUTATORS: frozenset[str] = frozenset(
    {"append", "extend", "insert", "update", "add", "appendleft", "setdefault"}
)
NO_GRAD_CONTEXTS: frozenset[str] = frozenset({"no_grad", "inference_mode"})


def dotted(node: cst.CSTNode) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, the base's dotted name for ``a[i]``, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    if isinstance(node, cst.Subscript):
        return dotted(node.value)
    return None


def callee_name(call: cst.Call) -> str | None:
    """The called name's last part: ``clip_grad_norm_`` for ``torch.nn.utils.clip_grad_norm_``."""
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


def _target_names(target: cst.CSTNode, out: set[str]) -> None:
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            _target_names(element.value, out)
    elif isinstance(target, cst.StarredElement):
        _target_names(target.value, out)
    else:
        name = dotted(target)
        if name is not None:
            out.add(name)


class _Defs(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        _target_names(node.target, self.names)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        _target_names(node.target, self.names)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        _target_names(node.target, self.names)

    def visit_For(self, node: cst.For) -> None:
        _target_names(node.target, self.names)

    def visit_AsName(self, node: cst.AsName) -> None:
        _target_names(node.name, self.names)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        _target_names(node.target, self.names)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.names.add(node.name.value)
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.names.add(node.name.value)
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> None:
        # In-place container updates build a value as much as an assignment does:
        # `log_probs.append(dist.log_prob(a))` in a rollout loop defines `log_probs`.
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in MUTATORS:
            name = dotted(func.value)
            if name is not None:
                self.names.add(name)


class _Uses(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        name = dotted(node)
        if name is None:
            return True
        self.names.add(name)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def defs(node: cst.CSTNode) -> set[str]:
    """Dotted names a statement (or anything nested in it) assigns."""
    visitor = _Defs()
    node.visit(visitor)
    return visitor.names


def uses(node: cst.CSTNode) -> set[str]:
    """Dotted names a statement mentions (an over-approximation of what it reads)."""
    visitor = _Uses()
    node.visit(visitor)
    return visitor.names


def kills(node: cst.CSTNode) -> set[str]:
    """Names a plain assignment rebinds completely (``x = ...``; not ``x[i] = ...``, not a
    definition inside a branch), so earlier definitions of them no longer matter."""
    if not isinstance(node, (cst.Assign, cst.AnnAssign)):
        return set()
    targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
    out: set[str] = set()
    for target in targets:
        elements = target.elements if isinstance(target, (cst.Tuple, cst.List)) else [target]
        for element in elements:
            value = element.value if isinstance(element, cst.BaseElement) else element
            if isinstance(value, (cst.Name, cst.Attribute)) and (name := dotted(value)):
                out.add(name)
    return out


def reads(node: cst.CSTNode) -> set[str]:
    """What a statement reads: the right-hand side of an assignment, else everything in it."""
    if isinstance(node, (cst.Assign, cst.AnnAssign)) and node.value is not None:
        return uses(node.value)
    return uses(node)


def satisfies(defined: set[str], needed: set[str]) -> bool:
    return any(n == d or n.startswith(d + ".") for d in defined for n in needed)


def is_no_grad(with_item: cst.WithItem) -> bool:
    call = with_item.item
    return isinstance(call, cst.Call) and callee_name(call) in NO_GRAD_CONTEXTS


@dataclass(frozen=True)
class Modules:
    """Names the script treats as trainable modules (``X.parameters()``, ``X.train()``,
    ``X.eval()`` somewhere) and those among them it freezes."""

    trained: frozenset[str]
    frozen: frozenset[str]

    def is_module(self, name: str | None) -> bool:
        return name is not None and any(name == t or name.startswith(t + ".") for t in self.trained)


class _Forward(cst.CSTVisitor):
    """Finds a call that runs a trained module: the module itself, one of its methods, or a
    helper it is passed to (``compute_loss(model, batch)``); never a frozen module, never under
    ``torch.no_grad()`` / ``torch.inference_mode()``. With no module names known at all, any call
    that is not a data call counts."""

    def __init__(self, modules: Modules) -> None:
        self.modules = modules
        self.found = False

    def visit_With(self, node: cst.With) -> bool:
        return not any(is_no_grad(i) for i in node.items)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> None:
        name = callee_name(node)
        if name in DATA_CALLS:
            return
        target = dotted(node.func)
        if target is not None and target in self.modules.frozen:
            return
        if not self.modules.trained:
            self.found = True
        elif self.modules.is_module(target) or any(
            self.modules.is_module(dotted(a.value)) and dotted(a.value) not in self.modules.frozen
            for a in node.args
        ):
            self.found = True


def is_forward(node: cst.CSTNode, modules: Modules) -> bool:
    visitor = _Forward(modules)
    node.visit(visitor)
    return visitor.found


def find_modules(calls: list[cst.Call], fors: list[cst.For]) -> Modules:
    """Trainable and frozen modules: frozen are those with ``X.requires_grad_(False)``,
    ``X.eval()`` and no ``X.train()`` anywhere, or ``for p in X.parameters(): p.requires_grad =
    False``."""
    evals: set[str] = set()
    trains: set[str] = set()
    frozen: set[str] = set()
    seen: set[str] = set()
    for call in calls:
        if not isinstance(call.func, cst.Attribute):
            continue
        owner = dotted(call.func.value)
        if owner is None:
            continue
        attr = call.func.attr.value
        if attr in ("parameters", "named_parameters", "train", "eval"):
            seen.add(owner)
        if attr == "eval":
            evals.add(owner)
        elif attr == "train":
            trains.add(owner)
        elif attr == "requires_grad_" and call.args and _is_false(call.args[0].value):
            frozen.add(owner)
    for loop in fors:
        it = loop.iter
        if not (
            isinstance(it, cst.Call)
            and isinstance(it.func, cst.Attribute)
            and it.func.attr.value == "parameters"
        ):
            continue
        owner = dotted(it.func.value)
        if owner is not None and any(_sets_requires_grad_false(i.node) for i in _all_items(loop)):
            frozen.add(owner)
    frozen |= evals - trains
    return Modules(frozenset(seen - frozen), frozenset(frozen))


def _all_items(loop: cst.For) -> list[Item]:
    body = loop.body
    return items_of(body) if isinstance(body, (cst.IndentedBlock, cst.SimpleStatementSuite)) else []


def _sets_requires_grad_false(node: cst.CSTNode) -> bool:
    return (
        isinstance(node, cst.Assign)
        and any(
            isinstance(t.target, cst.Attribute) and t.target.attr.value == "requires_grad"
            for t in node.targets
        )
        and _is_false(node.value)
    )


def _is_false(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "False"


def is_prep(item: Item, optimizer: str) -> bool:
    """Whether ``item`` only prepares gradients for the step (``scaler.unscale_(opt)``, clipping,
    or an ``if grad_clip:`` block made of those)."""
    node = item.node
    if isinstance(node, cst.If):
        inner = [i for block in _if_blocks(node) for i in items_of(block)]
        return bool(inner) and all(is_prep(i, optimizer) for i in inner)
    value = None
    if isinstance(node, cst.Expr):
        value = node.value
    elif isinstance(node, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
        value = node.value
    return isinstance(value, cst.Call) and callee_name(value) in PREP_CALLS


def _if_blocks(node: cst.If) -> list[Block]:
    blocks: list[Block] = [node.body]
    orelse = node.orelse
    if isinstance(orelse, cst.Else):
        blocks.append(orelse.body)
    elif isinstance(orelse, cst.If):
        blocks.extend(_if_blocks(orelse))
    return blocks


def predict_item(
    nav: Navigator,
    start: tuple[Item, Block],
    needed: set[str],
    bound: Block,
    modules: Modules,
    loss_runs_forward: bool = False,
) -> Item | None:
    """The earliest forward the loss depends on, walking back from the backward through its
    block and the enclosing blocks up to ``bound`` (the body of the loop that repeats the step)."""
    item, block = start
    needed = set(needed)
    # `F.cross_entropy(model(x), y).backward()`: the forward is in the backward's own statement.
    best: Item | None = item if loss_runs_forward else None
    while True:
        items = items_of(block)
        index = next(i for i, it in enumerate(items) if it.same(item))
        for earlier in reversed(items[:index]):
            if satisfies(defs(earlier.node), needed):
                needed = {n for n in needed if not satisfies(kills(earlier.node), {n})}
                needed |= reads(earlier.node)
                if is_forward(earlier.node, modules):
                    best = earlier
        if block is bound or isinstance(block, cst.Module):
            return best
        owner = nav.item_of(block)
        if owner is None:
            return best
        if isinstance(owner[0].node, (cst.FunctionDef, cst.ClassDef)):
            return best
        item, block = owner


def restore_item(step: tuple[Item, Block], backward: Item | None, optimizer: str) -> Item:
    """The step, or the first of the gradient-preparing statements right before it."""
    item, block = step
    items = items_of(block)
    index = next(i for i, it in enumerate(items) if it.same(item))
    while index > 0:
        earlier = items[index - 1]
        if backward is not None and earlier.same(backward):
            break
        if not is_prep(earlier, optimizer):
            break
        index -= 1
    return items[index]
