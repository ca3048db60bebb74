"""Unit tests of the codemod's decisions (the golden fixtures cover whole scripts)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xgrad_rewrite.codemod import Options, ParseError, rewrite
from xgrad_rewrite.codemod.inserted import format_s


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


LOOP = src(
    """
    import torch

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        optimizer.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
    """
)


def test_inserts_exactly_the_documented_lines() -> None:
    result = rewrite(LOOP, Options(s=2))
    assert result.text == src(
        """
        import xgrad_rewrite.runtime as xgrad
        import torch

        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            optimizer.zero_grad()
            xgrad.predict(optimizer, s=2)
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            xgrad.restore(optimizer)
            optimizer.step()
        """
    )
    assert result.changed and result.diagnostics == ()
    (step,) = result.steps
    assert (step.optimizer, step.predict_line, step.backward_line) == ("optimizer", 8, 10)
    assert (step.restore_line, step.step_line) == (11, 12)


@pytest.mark.parametrize(
    ("s", "text"), [(1, "1"), (2.0, "2"), (0.5, "0.5"), (0, "0"), (1.25, "1.25")]
)
def test_s_is_written_as_a_user_would(s: float, text: str) -> None:
    assert format_s(s) == text
    assert f"xgrad.predict(optimizer, s={text})" in rewrite(LOOP, Options(s=s)).text


def test_changed_s_updates_the_calls_and_revert_restores() -> None:
    patched = rewrite(LOOP, Options(s=1)).text
    updated = rewrite(patched, Options(s=3)).text
    assert updated == patched.replace("s=1)", "s=3)")
    assert rewrite(updated, Options(revert=True)).text == LOOP


def test_not_optimizers_are_left_alone() -> None:
    source = src(
        """
        import gym
        import torch.optim as optim

        opt = parser.parse_args()
        env = gym.make("CartPole-v1")
        scheduler = optim.lr_scheduler.StepLR(base, step_size=opt.step)
        for t in range(opt.steps):
            obs, reward, done, info = env.step(policy(obs))
            scheduler.step()
        """
    )
    result = rewrite(source)
    assert result.text == source and not result.changed and result.diagnostics == ()


def test_backward_without_step_is_reported_not_patched() -> None:
    source = src(
        """
        import torch

        def train_step(model, batch):
            loss = model(batch).sum()
            loss.backward()
            return loss
        """
    )
    result = rewrite(source)
    assert result.text == source
    assert [(d.code, d.line, d.severity) for d in result.diagnostics] == [("XG104", 5, "warning")]


def test_unsupported_torch_optimizer_is_a_warning_with_line() -> None:
    source = LOOP.replace("torch.optim.SGD", "torch.optim.LBFGS")
    result = rewrite(source)
    assert result.text == source
    assert [(d.code, d.line) for d in result.diagnostics] == [("XG102", 9)]


def test_unresolvable_optimizer_name_does_not_count_as_unsupported() -> None:
    source = LOOP.replace("torch.optim.SGD", "make_optimizer")
    result = rewrite(source)
    assert "xgrad.predict(optimizer, s=1)" in result.text
    assert result.diagnostics == ()


def test_optimizer_filter_uses_the_source_text() -> None:
    result = rewrite(LOOP, Options(optimizers=("optimizer_G",)))
    assert result.text == LOOP
    assert [d.code for d in result.diagnostics] == ["XG106"]
    assert rewrite(LOOP, Options(optimizers=("optimizer",))).changed


def test_taken_name_gets_another_alias_and_reverts() -> None:
    source = "xgrad = 'a project config'\n" + LOOP
    result = rewrite(source)
    assert "import xgrad_rewrite.runtime as xgrad_runtime\n" in result.text
    assert "xgrad_runtime.predict(optimizer, s=1)" in result.text
    assert [d.code for d in result.diagnostics] == ["XG107"]
    assert rewrite(result.text).text == result.text
    assert rewrite(result.text, Options(revert=True)).text == source


def test_users_own_runtime_import_is_reused_and_kept() -> None:
    source = "import xgrad_rewrite.runtime as xgrad\n" + LOOP + "xgrad.is_predicted(optimizer)\n"
    result = rewrite(source)
    assert result.text.count("import xgrad_rewrite.runtime") == 1
    assert "    xgrad.predict(optimizer, s=1)\n" in result.text
    assert rewrite(result.text, Options(revert=True)).text == source


def test_backward_in_branches_gets_one_predict_and_a_restore_per_step() -> None:
    source = src(
        """
        import torch

        def train(model, loader, optimizer, scaler, use_amp):
            for x, y in loader:
                loss = model(x, y)
                if use_amp:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
        """
    )
    text = rewrite(source).text
    assert text.count("xgrad.predict(optimizer, s=1)") == 1
    assert text.count("xgrad.restore(optimizer)") == 2
    lines = text.splitlines()
    assert (
        lines[lines.index("        xgrad.predict(optimizer, s=1)") + 1]
        == "        loss = model(x, y)"
    )


def test_eval_forward_in_the_same_iteration_stays_on_current_weights() -> None:
    source = src(
        """
        import torch

        def fit(model, optimizer, batches, val):
            for step, (x, y) in enumerate(batches):
                if step % 10 == 0:
                    with torch.no_grad():
                        score = model(val).mean()
                out = model(x)
                loss = (out - y).pow(2).mean()
                loss.backward()
                optimizer.step()
        """
    )
    lines = rewrite(source).text.splitlines()
    predict = lines.index("        xgrad.predict(optimizer, s=1)")
    assert lines[predict + 1] == "        out = model(x)"
    assert lines.index("                score = model(val).mean()") < predict


def test_parse_error_raises_with_line_and_column() -> None:
    with pytest.raises(ParseError) as info:
        rewrite("import torch\nx = (\n")
    assert (info.value.line, info.value.column) == (2, 4)


def test_fx_mode_wraps_the_model_once() -> None:
    result = rewrite(LOOP, Options(mode="fx", s=2))
    assert result.text == LOOP.replace(
        "lr=0.1)\n", "lr=0.1)\nmodel = xgrad.fx.predictive(model, optimizer, s=2)\n"
    ).replace("import torch\n", "import xgrad_rewrite.runtime as xgrad\nimport torch\n", 1)
    assert "xgrad.predict" not in result.text
    assert rewrite(result.text, Options(mode="fx", s=2)).text == result.text
    assert rewrite(result.text, Options(revert=True)).text == LOOP


# -- generated variations ----------------------------------------------------------------------

TEMPLATE = """{header}import torch
{gap}
def train(model, loader, {opt}, epochs):
    for epoch in range(epochs):
        for x, y in loader:
{body}
"""
BODY_STATEMENTS = [
    "{opt}.zero_grad()",
    "{comment}out = model(x)",
    "loss = torch.nn.functional.mse_loss(out, y)",
    "{backward_step}",
]


@st.composite
def training_scripts(draw: st.DrawFn) -> str:
    opt = draw(st.sampled_from(["optimizer", "opt", "self_opt", "optimizer_G"]))
    header = draw(
        st.sampled_from(["", '"""Doc."""\n', "# -*- coding: utf-8 -*-\n", '"""D."""\n\n'])
    )
    comment = draw(st.sampled_from(["", "# forward\n            ", "\n            "]))
    one_line = draw(st.booleans())
    backward_step = (
        f"loss.backward(); {opt}.step()"
        if one_line
        else f"loss.backward()\n            {opt}.step()"
    )
    body = "\n".join(
        "            " + s.format(opt=opt, comment=comment, backward_step=backward_step)
        for s in BODY_STATEMENTS
    )
    trailing = draw(st.sampled_from(["", "   ", "  # note"]))
    body = body.replace("mse_loss(out, y)", f"mse_loss(out, y){trailing}")
    text = TEMPLATE.format(
        header=header, gap=draw(st.sampled_from(["\n", "\n\n"])), opt=opt, body=body
    )
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


@settings(max_examples=40, deadline=None)
@given(training_scripts(), st.sampled_from([1, 2, 0.5]))
def test_generated_loops_round_trip(source: str, s: float) -> None:
    result = rewrite(source, Options(s=s))
    assert result.changed and len(result.steps) == 1
    compile(result.text, "<patched>", "exec")
    assert rewrite(result.text, Options(s=s)).text == result.text
    assert rewrite(result.text, Options(revert=True)).text == source
    newline = "\r\n" if "\r\n" in source else "\n"
    assert all(line.endswith("\r") == (newline == "\r\n") for line in result.text.split("\n")[:-1])
    lines = result.text.split(newline)
    predict = next(i for i, line in enumerate(lines) if ".predict(" in line)
    forward = next(i for i, line in enumerate(lines) if "out = model(x)" in line)
    assert predict == forward - 1
    assert lines[predict].startswith(" " * 12)


def test_hand_written_predicted_block_is_left_alone() -> None:
    source = src(
        """
        import torch
        import xgrad_rewrite.runtime as xgrad

        for x, y in loader:
            optimizer.zero_grad()
            with xgrad.predicted(optimizer, s=2):
                loss = model(x, y)
                loss.backward()
            optimizer.step()
        """
    )
    result = rewrite(source)
    assert result.text == source and not result.changed
    assert rewrite(source, Options(revert=True)).text == source


def test_no_forward_found_is_reported() -> None:
    source = src(
        """
        def step(loss, optimizer):
            loss.backward()
            optimizer.step()
        """
    )
    result = rewrite(source)
    assert result.text == source
    assert [(d.code, d.line) for d in result.diagnostics] == [("XG105", 2)]


def test_runtime_imported_under_a_users_name_is_never_touched() -> None:
    source = "import xgrad_rewrite.runtime as xg\n" + LOOP.replace(
        "    optimizer.step()\n", "    xg.restore(optimizer)\n    optimizer.step()\n"
    )
    assert rewrite(source, Options(revert=True)).text == source
    result = rewrite(source)
    assert result.text == source
    assert [d.code for d in result.diagnostics] == ["XG110"]


def test_a_call_this_run_would_not_insert_keeps_the_file_unchanged() -> None:
    source = src(
        """
        import xgrad_rewrite.runtime as xgrad

        def evaluate_on_current_weights(model, optimizer, batch):
            xgrad.restore(optimizer)
            return model(batch)
        """
    )
    result = rewrite(source, Options(s=2))
    assert result.text == source and not result.changed
    assert [(d.code, d.line) for d in result.diagnostics] == [("XG109", 4)]
    assert rewrite(source, Options(revert=True)).text != source  # --revert strips it, as asked


def test_forward_inside_the_backward_statement() -> None:
    source = src(
        """
        import torch.nn.functional as F

        def train(model, batches, opt):
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()
        """
    )
    lines = rewrite(source).text.splitlines()
    predict = lines.index("        xgrad.predict(opt, s=1)")
    assert lines[predict + 1] == "        F.cross_entropy(model(x), y).backward()"
    assert lines[predict + 2] == "        xgrad.restore(opt)"


def test_step_already_predicted_by_hand_is_left_alone() -> None:
    source = src(
        """
        import torch
        import xgrad_rewrite.runtime as xg

        def train(model, batches, opt):
            for x, y in batches:
                xg.predict(opt, s=2)
                loss = model(x, y)
                loss.backward()
                xg.restore(opt)
                opt.step()
        """
    )
    result = rewrite(source)
    assert result.text == source
    assert [(d.code, d.line) for d in result.diagnostics] == [("XG110", 10)]


def test_step_reports_give_output_lines_for_shared_predict() -> None:
    source = src(
        """
        import torch

        def train(model, loader, optimizer, scaler, use_amp):
            for x, y in loader:
                loss = model(x, y)
                if use_amp:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                else:
                    loss.backward()
                    optimizer.step()
        """
    )
    result = rewrite(source)
    lines = result.text.splitlines()
    for step in result.steps:
        assert "xgrad.predict(optimizer" in lines[step.predict_line - 1]
        assert "xgrad.restore(optimizer)" in lines[step.restore_line - 1]
        assert "backward()" in lines[step.backward_line - 1]
        assert "step(" in lines[step.step_line - 1]
    assert len(result.steps) == 2


ODD_SHAPES = '''\
"""Odd shapes around a training loop."""
import torch
from torch import optim


async def fetch(x):
    return x


async def train(model, data, mode):
    opt = optim.Adam(model.parameters(), lr=1e-3)
    async for x, y in data:
        match mode:
            case "a":
                try:
                    out = model(x)
                except* ValueError:
                    raise
                else:
                    if (loss := ((out - y) ** 2).mean()) > 0: loss.backward(); opt.step()
                    elif mode: pass
                    else:
                        pass
                finally:
                    opt.zero_grad()
            case _:
                async with torch.no_grad() if False else fetch(x) as z:
                    out = model(await z); loss = out.sum()
                    loss.backward()
                    opt.step()
'''


def test_statements_pair_across_match_try_star_async_elif_and_one_line_suites() -> None:
    """The ast analysis and libcst's edit see the same statements (codemod/edit/cstmap.py) in every
    compound statement; the in-place check and revert agree on them."""
    result = rewrite(ODD_SHAPES)
    compile(result.text, "odd.py", "exec")
    lines = [(s.backward_line, s.step_line, s.predict_line, s.restore_line) for s in result.steps]
    assert lines == [(31, 33, 29, 32)]
    assert [(d.code, d.line) for d in result.diagnostics] == [("XG105", 21)]
    second = rewrite(result.text)
    assert not second.changed and second.steps == result.steps
    assert rewrite(result.text, Options(revert=True)).text == ODD_SHAPES
