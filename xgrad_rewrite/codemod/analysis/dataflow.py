"""Which statements a loss depends on, and which of them run a forward of the trained model.

Names are tracked as dotted strings (``loss``, ``self.model``, ``outputs.loss``); a statement that
defines ``x`` satisfies a need for ``x`` or ``x.y``. This is a deliberately small, statement-level
def/use analysis: enough to tell the training forward from the evaluation forward, the logging and
the data loading around it, so that predict goes late enough to leave those on the current
weights and early enough that every forward the backward reaches runs on the predicted ones
(the placement invariant, ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Block, Navigator, is_module, items_of

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


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, the base's dotted name for ``a[i]``, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return dotted(node.value)
    return None


def callee_name(call: ast.Call) -> str | None:
    """The called name's last part: ``clip_grad_norm_`` for ``torch.nn.utils.clip_grad_norm_``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def arg_values(call: ast.Call) -> list[ast.expr]:
    """Every argument's value in source order: positional (``*a`` as ``a``), then keywords."""
    values = [a.value if isinstance(a, ast.Starred) else a for a in call.args]
    return values + [k.value for k in call.keywords]


def positional(call: ast.Call) -> list[ast.expr]:
    return [a.value if isinstance(a, ast.Starred) else a for a in call.args]


def _target_names(target: ast.AST, out: set[str]) -> None:
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _target_names(element, out)
    elif isinstance(target, ast.Starred):
        _target_names(target.value, out)
    else:
        name = dotted(target)
        if name is not None:
            out.add(name)


def defs(node: ast.AST) -> set[str]:
    """Dotted names a statement (or anything nested in it) assigns."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (*FUNCTIONS, ast.ClassDef)):
            names.add(current.name)
            continue
        if isinstance(current, ast.Lambda):
            continue
        if isinstance(current, ast.Assign):
            for target in current.targets:
                _target_names(target, names)
        elif isinstance(current, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            _target_names(current.target, names)
        elif isinstance(current, ast.NamedExpr):
            _target_names(current.target, names)
        elif isinstance(current, ast.withitem) and current.optional_vars is not None:
            _target_names(current.optional_vars, names)
        elif isinstance(current, ast.ExceptHandler) and current.name:
            names.add(current.name)
        elif isinstance(current, ast.alias) and current.asname:
            names.add(current.asname)
        elif isinstance(current, ast.Call):
            # In-place container updates build a value as much as an assignment does:
            # `log_probs.append(dist.log_prob(a))` in a rollout loop defines `log_probs`.
            func = current.func
            if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
                name = dotted(func.value)
                if name is not None:
                    names.add(name)
        stack.extend(ast.iter_child_nodes(current))
    return names


def uses(node: ast.AST, cut: frozenset[str] = frozenset()) -> set[str]:
    """Dotted names a statement mentions (an over-approximation of what it reads): names,
    attribute chains, keyword-argument and parameter names; nothing under a call of a method
    named in ``cut`` (``x.detach()``)."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if (
            cut
            and isinstance(current, ast.Call)
            and isinstance(current.func, ast.Attribute)
            and current.func.attr in cut
        ):
            continue
        if isinstance(current, ast.Attribute):
            name = dotted(current)
            if name is not None:
                names.add(name)
                continue
            names.add(current.attr)
        elif isinstance(current, ast.Name):
            names.add(current.id)
        elif isinstance(current, ast.keyword) and current.arg:
            names.add(current.arg)
        elif isinstance(current, ast.arg):
            names.add(current.arg)
        elif isinstance(current, (*FUNCTIONS, ast.ClassDef)):
            names.add(current.name)
        elif isinstance(current, ast.alias):
            names.add(current.name)
            if current.asname:
                names.add(current.asname)
        elif isinstance(current, ast.ExceptHandler) and current.name:
            names.add(current.name)
        stack.extend(ast.iter_child_nodes(current))
    return names


def kills(node: ast.AST) -> set[str]:
    """Names a plain assignment rebinds completely (``x = ...``; not ``x[i] = ...``, not a
    definition inside a branch), so earlier definitions of them no longer matter."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    else:
        return set()
    out: set[str] = set()
    for target in targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        for element in elements:
            value = element.value if isinstance(element, ast.Starred) else element
            if isinstance(value, (ast.Name, ast.Attribute)) and (name := dotted(value)):
                out.add(name)
    return out


def reads(node: ast.AST) -> set[str]:
    """What a statement reads: the right-hand side of an assignment, else everything in it."""
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        return uses(node.value)
    return uses(node)


# Calls whose result carries no autograd graph: a value read only through them (a GAN's
# `gen_imgs.detach()` in the discriminator's loss) brings no forward into the backward.
GRAPH_CUTS: frozenset[str] = frozenset({"detach", "item", "tolist", "numpy"})


def graph_reads(node: ast.AST) -> set[str]:
    """:func:`reads` less the names read only through ``x.detach()``/``x.item()``: what the
    backward's graph can reach from this statement."""
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        node = node.value
    return uses(node, cut=GRAPH_CUTS)


def satisfies(defined: set[str], needed: set[str]) -> bool:
    return any(n == d or n.startswith(d + ".") for d in defined for n in needed)


def is_no_grad(item: ast.withitem) -> bool:
    call = item.context_expr
    return isinstance(call, ast.Call) and callee_name(call) in NO_GRAD_CONTEXTS


@dataclass(frozen=True)
class Modules:
    """Names the script treats as trainable modules (``X.parameters()``, ``X.train()``,
    ``X.eval()`` somewhere) and those among them it provably freezes. ``helpers`` says, for a
    call of a function or method defined in the file, whether its body may run a forward
    (None: not one of those)."""

    trained: frozenset[str]
    frozen: frozenset[str]
    helpers: Callable[[ast.Call, Modules], bool | None] | None = field(default=None, compare=False)

    def is_module(self, name: str | None) -> bool:
        return name is not None and any(name == t or name.startswith(t + ".") for t in self.trained)


def is_forward(node: ast.AST, modules: Modules) -> bool:
    """Whether ``node`` runs a trained module: the module itself, one of its methods, or a
    helper it is passed to (``compute_loss(model, batch)``); never a frozen module, never under
    ``torch.no_grad()`` / ``torch.inference_mode()``. With no module names known at all, any
    call that is not a data call counts."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.With, ast.AsyncWith)):
            if any(is_no_grad(i) for i in current.items):
                continue
        elif isinstance(current, (*FUNCTIONS, ast.Lambda)):
            continue
        elif isinstance(current, ast.Call) and _runs_module(current, modules):
            return True
        stack.extend(ast.iter_child_nodes(current))
    return False


def _runs_module(call: ast.Call, modules: Modules) -> bool:
    if callee_name(call) in DATA_CALLS:
        return False
    target = dotted(call.func)
    if target is not None and target in modules.frozen:
        return False
    if modules.is_module(target) or any(
        modules.is_module(name := dotted(value)) and name not in modules.frozen
        for value in arg_values(call)
    ):
        return True  # the module itself, or a helper it is handed to (`encode(enc, x)`)
    if modules.helpers is not None:
        verdict = modules.helpers(call, modules)
        if verdict is not None:
            return verdict
    return not modules.trained


def find_modules(calls: list[ast.Call], fors: list[ast.For | ast.AsyncFor]) -> Modules:
    """Trainable and frozen modules.

    Frozen needs proof, because a module taken for frozen gets no prediction before its
    forward, and if it is trained after all the backward meets weights changed in place: a
    module is frozen when the script sets ``X.requires_grad_(False)`` or ``p.requires_grad =
    False`` over ``X.parameters()``, and never undoes it (``requires_grad_(True)``, a loop setting
    anything else), and never hands ``X.parameters()`` to anything (an optimizer, a clipping
    call) beyond such a loop, and no part of it ``X.part`` is trained. ``X.eval()`` proves
    nothing: evaluation functions call it on trained models all the time."""
    frozen: set[str] = set()
    unfrozen: set[str] = set()
    seen: set[str] = set()
    freezing_loops: set[int] = set()
    for loop in fors:
        it = loop.iter
        if not (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Attribute)
            and it.func.attr in ("parameters", "named_parameters")
        ):
            continue
        owner = dotted(it.func.value)
        settings = [v for s in loop.body if (v := _requires_grad_value(s)) is not None]
        if owner is None or not settings:
            continue
        freezing_loops.add(id(it))
        if all(_is_false(v) for v in settings):
            frozen.add(owner)
        else:
            unfrozen.add(owner)
    for call in calls:
        if not isinstance(call.func, ast.Attribute):
            continue
        owner = dotted(call.func.value)
        if owner is None:
            continue
        attr = call.func.attr
        if attr in ("parameters", "named_parameters", "train", "eval"):
            seen.add(owner)
        if attr in ("parameters", "named_parameters") and id(call) not in freezing_loops:
            unfrozen.add(owner)
        elif attr == "requires_grad_":
            values = arg_values(call)
            (frozen if values and _is_false(values[0]) else unfrozen).add(owner)
    frozen = {f for f in frozen if not any(u == f or u.startswith(f + ".") for u in unfrozen)}
    return Modules(frozenset(seen - frozen), frozenset(frozen))


def _requires_grad_value(node: ast.stmt) -> ast.expr | None:
    """``v`` for ``p.requires_grad = v``."""
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets
    ):
        return node.value
    return None


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def is_prep(item: ast.stmt, optimizer: str) -> bool:
    """Whether ``item`` only prepares gradients for the step (``scaler.unscale_(opt)``, clipping,
    or an ``if grad_clip:`` block made of those)."""
    if isinstance(item, ast.If):
        inner = [*item.body, *item.orelse]
        return bool(inner) and all(is_prep(i, optimizer) for i in inner)
    value = None
    if isinstance(item, (ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign)):
        value = item.value
    return isinstance(value, ast.Call) and callee_name(value) in PREP_CALLS


def predict_item(
    nav: Navigator,
    start: tuple[ast.stmt, Block],
    needed: set[str],
    bound: Block,
    modules: Modules,
    loss_runs_forward: bool = False,
    rest: set[str] | None = None,
) -> ast.stmt | None:
    """The earliest forward the loss depends on, walking back from the backward through its
    block and the enclosing blocks up to ``bound`` (the body of the loop that repeats the step).
    ``rest``, when given, receives the names the loss still needs from before that walk (with
    the iterable of the loop whose targets it reads): where its graph may come from outside."""
    item, block = start
    needed = set(needed)
    result = _walk_back(nav, item, block, needed, bound, modules, loss_runs_forward)
    if rest is not None:
        rest |= needed
        owner = bound[0]
        if isinstance(owner, (ast.For, ast.AsyncFor)) and satisfies(defs_of_target(owner), needed):
            rest |= uses(owner.iter)
    return result


def defs_of_target(loop: ast.For | ast.AsyncFor) -> set[str]:
    names: set[str] = set()
    _target_names(loop.target, names)
    return names


def _walk_back(
    nav: Navigator,
    item: ast.stmt,
    block: Block,
    needed: set[str],
    bound: Block,
    modules: Modules,
    loss_runs_forward: bool,
) -> ast.stmt | None:
    """:func:`predict_item`'s walk; ``needed`` is updated in place."""
    # `F.cross_entropy(model(x), y).backward()`: the forward is in the backward's own statement.
    best: ast.stmt | None = item if loss_runs_forward else None
    while True:
        items = items_of(block)
        index = next(i for i, it in enumerate(items) if it is item)
        for earlier in reversed(items[:index]):
            if satisfies(defs(earlier), needed):
                killed = {n for n in needed if satisfies(kills(earlier), {n})}
                needed -= killed
                needed |= graph_reads(earlier)
                if is_forward(earlier, modules):
                    best = earlier
        if block == bound or is_module(block):
            return best
        owner = nav.owner_item(block)
        if owner is None or isinstance(owner[0], (*FUNCTIONS, ast.ClassDef)):
            return best
        loop = owner[0]
        if isinstance(loop, (ast.For, ast.AsyncFor)) and block == (loop, "body"):
            targets = defs_of_target(loop)
            if satisfies(targets, needed):  # `for r, prob in self.data:` reads self.data
                needed -= {n for n in needed if satisfies(targets, {n})}
                needed |= uses(loop.iter)
        item, block = owner


def restore_item(
    step: tuple[ast.stmt, Block], backward: ast.stmt | None, optimizer: str
) -> ast.stmt:
    """The step, or the first of the gradient-preparing statements right before it."""
    item, block = step
    items = items_of(block)
    index = next(i for i, it in enumerate(items) if it is item)
    while index > 0:
        earlier = items[index - 1]
        if backward is not None and earlier is backward:
            break
        if not is_prep(earlier, optimizer):
            break
        index -= 1
    return items[index]


def no_grad_between(
    nav: Navigator, start: ast.stmt, end: ast.stmt, modules: set[str] | None
) -> list[ast.stmt]:
    """``with torch.no_grad():`` blocks among the statements from ``start`` (where predict
    goes) up to ``end`` (the backward) that run one of ``modules`` (the optimizer's; any call
    when they are not known): code that then runs on θ̂."""
    below: dict[int, Block] = {}  # statement on the way up from `end` -> its block holding it
    current: tuple[ast.stmt, Block] | None = (end, nav.blocks[end])
    while current is not None:
        item, block = current
        current = nav.owner_item(block)
        if current is not None:
            below[id(current[0])] = block
    found: list[ast.stmt] = []
    block = nav.blocks[start]
    items = items_of(block)
    index = next(i for i, it in enumerate(items) if it is start)
    while True:
        for statement in items[index:]:
            if statement is end:
                return found
            if id(statement) in below:
                items, index = items_of(below[id(statement)]), 0
                break
            found.extend(_no_grad_blocks(statement, modules))
        else:
            return found


def _no_grad_blocks(statement: ast.stmt, modules: set[str] | None) -> list[ast.stmt]:
    out = []
    for node in ast.walk(statement):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(is_no_grad(i) for i in node.items):
            if any(_runs_one_of(n, modules) for n in ast.walk(node) if isinstance(n, ast.Call)):
                out.append(node)
    return out


def _runs_one_of(call: ast.Call, modules: set[str] | None) -> bool:
    if callee_name(call) in DATA_CALLS:
        return False
    if modules is None:
        return True
    names = [dotted(call.func), *(dotted(v) for v in arg_values(call))]
    return any(
        n is not None and any(n == m or n.startswith(m + ".") for m in modules) for n in names
    )
