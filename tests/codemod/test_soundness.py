"""Placement and identity decisions in small scripts (the runnable versions are the fixtures
``fixtures/shape_*``, run under the verifier by test_fixtures.py)."""

from __future__ import annotations

import textwrap

from xgrad_rewrite.codemod import Options, rewrite


def patch(text: str) -> tuple[str, list[str]]:
    result = rewrite(textwrap.dedent(text), Options())
    return result.text, [d.code for d in result.diagnostics]


def test_a_step_whose_backward_is_in_another_function_is_noted() -> None:
    text, codes = patch(
        """\
        import torch
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def train_step(x):
            loss = model(x).sum()
            loss.backward()
            return loss

        for x in [torch.randn(3, 2)]:
            loss = train_step(x)
            optimizer.step()
        """
    )
    assert "xgrad" not in text
    assert codes == ["XG104", "XG115"]


def test_an_optimizer_bound_under_a_condition_is_left_with_a_note() -> None:
    text, codes = patch(
        """\
        import torch
        use_optimizer = False
        model = torch.nn.Linear(2, 1)
        if use_optimizer:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in [torch.randn(3, 2)]:
            loss = model(x).sum()
            loss.backward()
            if use_optimizer:
                optimizer.step()
        """
    )
    assert "xgrad" not in text and codes == ["XG111"]


def test_an_optimizer_bound_in_both_branches_is_patched() -> None:
    text, codes = patch(
        """\
        import torch
        model = torch.nn.Linear(2, 1)
        if model.in_features > 1:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        else:
            optimizer = torch.optim.Adam(model.parameters())
        for x in [torch.randn(3, 2)]:
            loss = model(x).sum()
            loss.backward()
            optimizer.step()
        """
    )
    assert "xgrad.predict(optimizer, s=1)" in text and codes == []


def test_two_optimizers_after_one_backward_are_restored_before_the_first_step() -> None:
    text, codes = patch(
        """\
        import torch
        enc, dec = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        enc_opt = torch.optim.SGD(enc.parameters(), lr=0.1)
        dec_opt = torch.optim.Adam(dec.parameters())
        for x in [torch.randn(3, 2)]:
            loss = dec(enc(x)).sum()
            loss.backward()
            enc_opt.step()
            dec_opt.step()
        """
    )
    lines = [line.strip() for line in text.splitlines()]
    restores = [lines.index("xgrad.restore(enc_opt)"), lines.index("xgrad.restore(dec_opt)")]
    assert max(restores) < lines.index("enc_opt.step()")
    assert lines.index("xgrad.predict(dec_opt, s=1)") < lines.index("loss = dec(enc(x)).sum()")
    assert codes == []


def test_a_custom_class_step_is_not_an_optimizer() -> None:
    text, codes = patch(
        """\
        import torch

        class Meter:
            def step(self):
                pass

        def train(model, optimizer, meter):
            for x in [torch.randn(3, 2)]:
                optimizer.zero_grad()
                loss = model(x).sum()
                loss.backward()
                meter.step()
                optimizer.step()

        model = torch.nn.Linear(2, 1)
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), Meter())
        """
    )
    assert "xgrad.predict(optimizer, s=1)" in text
    assert "xgrad.predict(meter" not in text and "xgrad.restore(meter" not in text
    assert codes == []


def test_eval_in_a_test_function_does_not_freeze_the_trained_model() -> None:
    text, _ = patch(
        """\
        import torch
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def test(model):
            model.eval()
            with torch.no_grad():
                return model(torch.randn(3, 2)).sum()

        for x in [torch.randn(3, 2)]:
            optimizer.zero_grad()
            out = model(x)
            loss = out.sum()
            loss.backward()
            optimizer.step()
        test(model)
        """
    )
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index("xgrad.predict(optimizer, s=1)") == lines.index("out = model(x)") - 1


def test_a_schedule_free_optimizer_is_an_unsupported_optimizer_not_a_scheduler() -> None:
    text, codes = patch(
        """\
        import schedulefree
        import torch
        model = torch.nn.Linear(2, 1)
        optimizer = schedulefree.AdamWScheduleFree(model.parameters(), lr=0.1)
        for x in [torch.randn(3, 2)]:
            loss = model(x).sum()
            loss.backward()
            optimizer.step()
        """
    )
    result = rewrite(textwrap.dedent(text), Options())
    assert "xgrad" not in text and codes == ["XG102"]
    assert "schedulefree.AdamWScheduleFree" in result.diagnostics[0].message
