"""XGradCallback on a real transformers.Trainer: a tiny random GPT-2, CPU, nothing downloaded."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import xgrad_rewrite.runtime as xgrad  # noqa: E402
from xgrad_rewrite.integrations.transformers import XGradCallback  # noqa: E402

VOCAB, SEQ, N = 32, 8, 16


def tiny_gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=SEQ,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


class Tokens(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, VOCAB, (SEQ,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "labels": ids}


def inner(optimizer):
    """The torch optimizer inside accelerate's AcceleratedOptimizer (itself an Optimizer)."""
    return getattr(optimizer, "optimizer", optimizer)


class Recorder:
    """A forward pre-hook: the batch and whether the optimizer's weights were predicted."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.batches: list[torch.Tensor] = []
        self.predicted: list[bool] = []
        self.trainer = None
        model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.batches.append(kwargs["input_ids"].clone())
        optimizer = inner(self.trainer.optimizer) if self.trainer else None
        self.predicted.append(optimizer is not None and xgrad.is_predicted(optimizer))


def train(model, tmp_path, callbacks, **overrides):
    options = dict(
        output_dir=str(tmp_path),
        max_steps=5,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        optim="adamw_torch",
        weight_decay=0.0,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    args = transformers.TrainingArguments(**{**options, **overrides})
    recorder = Recorder(model)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Tokens(),
        eval_dataset=Tokens() if "eval_strategy" in overrides else None,
        callbacks=callbacks,
    )
    recorder.trainer = trainer
    trainer.train()
    return trainer, recorder


def manual_xgrad(model, batches, s, accumulate=1):
    """The patched loop the codemod writes, over the batches the Trainer used."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for i in range(0, len(batches), accumulate):
        micro = batches[i : i + accumulate]
        # The Trainer divides the token loss by every label token of the step (num_items_in_batch).
        tokens = sum(ids.numel() for ids in micro)
        optimizer.zero_grad()
        xgrad.predict(optimizer, s=s)
        for ids in micro:
            model(input_ids=ids, labels=ids, num_items_in_batch=tokens).loss.backward()
        xgrad.restore(optimizer)
        optimizer.step()
    return model


def test_trainer_with_callback_equals_manual_xgrad_loop(tmp_path):
    model = tiny_gpt2()
    start = copy.deepcopy(model)
    trainer, seen = train(model, tmp_path, [XGradCallback(s=2)])

    assert len(seen.batches) == 5
    assert all(seen.predicted), "every training forward must run on predicted weights"
    assert not xgrad.is_predicted(inner(trainer.optimizer)), "training must end on real weights"

    reference = manual_xgrad(copy.deepcopy(start), seen.batches, s=2)
    for (name, got), want in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)

    plain, _ = train(copy.deepcopy(start), tmp_path, [])
    differs = [
        not torch.equal(a, b)
        for a, b in zip(model.parameters(), plain.model.parameters(), strict=True)
    ]
    assert any(differs), "the callback must change training"


def test_gradient_accumulation_predicts_every_micro_batch(tmp_path):
    model = tiny_gpt2()
    start = copy.deepcopy(model)
    trainer, seen = train(
        model, tmp_path, [XGradCallback(s=1)], max_steps=3, gradient_accumulation_steps=2
    )
    assert len(seen.batches) == 6
    assert all(seen.predicted)
    assert not xgrad.is_predicted(inner(trainer.optimizer))
    reference = manual_xgrad(copy.deepcopy(start), seen.batches, s=1, accumulate=2)
    for (name, got), want in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_evaluation_after_steps_sees_real_weights(tmp_path):
    model = tiny_gpt2()
    trainer, seen = train(
        model,
        tmp_path,
        [XGradCallback(s=1)],
        eval_strategy="steps",
        eval_steps=2,
        per_device_eval_batch_size=8,
    )
    # The training forwards are predicted; the evaluation forwards (after steps 2 and 4) are not.
    assert seen.predicted.count(True) == 5
    assert seen.predicted.count(False) >= 2


def test_skipped_step_still_ends_on_real_weights():
    """A step that accelerate's GradScaler skips never calls optimizer.step (no pre-hook)."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # momentum state, so predict moves the weights
    theta = [p.detach().clone() for p in model.parameters()]
    callback = XGradCallback(s=2)

    callback.on_step_begin(None, None, None, optimizer=optimizer)
    assert not torch.equal(model.weight, theta[0])
    callback.on_pre_optimizer_step(None, None, None, optimizer=optimizer)  # the step is skipped
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), theta, strict=True))


def test_runtime_unwraps_accelerates_optimizer(tmp_path):
    """The runtime unwraps wrappers such as accelerate's AcceleratedOptimizer."""
    model = tiny_gpt2()
    trainer, _ = train(model, tmp_path, [XGradCallback(s=1)], max_steps=2)
    wrapper = trainer.optimizer
    xgrad.predict(wrapper, s=1)
    try:
        assert xgrad.is_predicted(wrapper) and xgrad.is_predicted(inner(wrapper))
    finally:
        xgrad.restore(wrapper)
    assert not xgrad.is_predicted(inner(wrapper))
