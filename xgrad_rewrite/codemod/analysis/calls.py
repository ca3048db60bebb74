"""The calls the codemod writes: what text, at which slot, for the steps the analysis found.

Kept apart from :mod:`.patch` (which needs libcst) so that the analysis can say what it would
insert without loading libcst.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from xgrad_rewrite.codemod.analysis.blocks import Slot
from xgrad_rewrite.codemod.analysis.find import Finder, Plan, find
from xgrad_rewrite.codemod.analysis.fx_mode import find_fx
from xgrad_rewrite.codemod.analysis.imports import choose_alias, import_slot
from xgrad_rewrite.codemod.api import Options
from xgrad_rewrite.codemod.inserted import import_line, render


@dataclass(eq=False)
class Insertion:
    """``code`` (one simple statement, no newline) at ``slot``; ``take_leading`` moves the
    target's leading blank lines/comments above the inserted line. ``kind`` is ``predict``,
    ``restore``, ``fx`` or ``import``; ``optimizer`` the optimizer's source text."""

    slot: Slot
    code: str
    take_leading: bool = True
    kind: str = "import"
    optimizer: str = ""


@dataclass
class Planned:
    """What one analysis decided: the steps found, the calls to insert (restores first, the
    import not included), and the alias the runtime is imported under."""

    plans: list[Plan]
    calls: list[Insertion]
    alias: str
    needs_import: bool
    import_slot: Slot | None = None  # set by insertions()

    def insertions(self, tree: ast.Module) -> list[Insertion]:
        """The calls, after the import when one is needed (placed by :func:`.import_slot`)."""
        if not (self.calls and self.needs_import):
            return list(self.calls)
        slot, take_leading = import_slot(tree)
        self.import_slot = slot
        return [Insertion(slot, import_line(self.alias), take_leading), *self.calls]


def plan_calls(finder: Finder, options: Options) -> Planned:
    """The calls for every step :mod:`.find` (or, with ``--mode fx``, :mod:`.fx_mode`) finds."""
    alias, needs_import = choose_alias(finder.module, finder.positions, finder.collected.names)
    calls: list[Insertion] = []
    plans: list[Plan] = []
    if options.mode == "fx":
        for plan, model in find_fx(finder, options):
            plans.append(plan)
            if plan.predict is not None:
                code = render("fx", alias, plan.optimizer, options.s, model)
                calls.append(Insertion(plan.predict, code, kind="fx", optimizer=plan.optimizer))
    else:
        plans = find(finder, options)
        seen: set[tuple[object, str, str]] = set()
        for plan in plans:
            wanted = []
            if plan.restore is not None:
                wanted.append(("restore", plan.restore, render("restore", alias, plan.optimizer)))
            if plan.predict is not None:
                code = render("predict", alias, plan.optimizer, options.s)
                wanted.append(("predict", plan.predict, code))
            for kind, slot, code in wanted:
                if (slot.key(), kind, plan.optimizer) in seen:
                    continue
                seen.add((slot.key(), kind, plan.optimizer))
                calls.append(Insertion(slot, code, kind=kind, optimizer=plan.optimizer))
    calls.sort(key=lambda i: 0 if i.kind == "restore" else 1)
    return Planned(plans, calls, alias, needs_import)
