"""XGradCallback on a real lightning.Trainer: a tiny LightningModule, a few CPU steps."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import xgrad_rewrite.runtime as xgrad  # noqa: E402
from xgrad_rewrite.integrations.lightning import XGradCallback  # noqa: E402

OPTIMIZERS = {
    "sgdm": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=0.01),  # needs g_t: fresh grads
}


def data(n: int = 32) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return torch.utils.data.TensorDataset(x, x @ torch.randn(4, 1, generator=g) + 0.1)


class Regression(L.LightningModule):
    """Records, at each forward, the batch and whether the weights were predicted."""

    def __init__(self, optimizer: str = "sgdm", manual: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )
        self.optimizer_name = optimizer
        self.automatic_optimization = not manual
        self.seen: list[tuple[str, bool]] = []
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        opt = self.trainer.optimizers[0] if self._trainer and self.trainer.optimizers else None
        stage = "train" if self.training else "eval"
        self.seen.append((stage, opt is not None and xgrad.is_predicted(opt)))
        return self.net(x)

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        if self.training:
            self.batches.append((x.clone(), y.clone()))
        return torch.nn.functional.mse_loss(self(x), y)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self.loss(batch)
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.loss(batch))
        opt.step()

    def validation_step(self, batch, batch_idx):
        self.loss(batch)

    def configure_optimizers(self):
        return OPTIMIZERS[self.optimizer_name](self.parameters())


def fit(module, callbacks, accumulate: int = 1, validate: bool = False, steps: int = 5):
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=accumulate,
        val_check_interval=2 if validate else None,
        limit_val_batches=1 if validate else 0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    loader = torch.utils.data.DataLoader(data(), batch_size=4)
    val = torch.utils.data.DataLoader(data(8), batch_size=8) if validate else None
    trainer.fit(module, loader, val)
    return trainer


def manual_xgrad(net, micro_batches, optimizer, s, accumulate=1):
    """The patched loop the codemod writes, with Lightning's 1/accumulate loss scaling."""
    opt = OPTIMIZERS[optimizer](net.parameters())
    for i in range(0, len(micro_batches), accumulate):
        opt.zero_grad()
        xgrad.predict(opt, s=s)
        for x, y in micro_batches[i : i + accumulate]:
            (torch.nn.functional.mse_loss(net(x), y) / accumulate).backward()
        xgrad.restore(opt)
        opt.step()
    return net


def assert_same_weights(got, want):
    for a, b in zip(got.parameters(), want.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fit_with_callback_equals_manual_xgrad_loop(optimizer):
    module = Regression(optimizer)
    start = copy.deepcopy(module.net)
    trainer = fit(module, [XGradCallback(s=2)])

    train = module.batches
    assert len(train) == 5
    assert all(p for stage, p in module.seen if stage == "train")
    assert not xgrad.is_predicted(trainer.optimizers[0])

    reference = manual_xgrad(copy.deepcopy(start), train, optimizer, s=2)
    assert_same_weights(module.net, reference)

    plain = Regression(optimizer)
    fit(plain, [])
    assert any(
        not torch.equal(a, b) for a, b in zip(module.parameters(), plain.parameters(), strict=True)
    ), "the callback must change training"


def test_gradient_accumulation_predicts_every_micro_batch():
    module = Regression("adam")
    start = copy.deepcopy(module.net)
    fit(module, [XGradCallback(s=1)], accumulate=2, steps=3)
    train = module.batches
    assert len(train) == 6
    assert all(p for stage, p in module.seen if stage == "train")
    assert_same_weights(module.net, manual_xgrad(copy.deepcopy(start), train, "adam", 1, 2))


def test_manual_optimization():
    module = Regression("sgdm", manual=True)
    start = copy.deepcopy(module.net)
    fit(module, [XGradCallback(s=1)])
    train = module.batches
    assert len(train) == 5 and all(p for stage, p in module.seen if stage == "train")
    assert_same_weights(module.net, manual_xgrad(copy.deepcopy(start), train, "sgdm", 1))


def test_validation_runs_on_real_weights():
    module = Regression("sgdm")
    fit(module, [XGradCallback(s=1)], validate=True)
    stages = module.seen
    assert ("eval", False) in stages
    assert ("eval", True) not in stages
    assert all(p for stage, p in stages if stage == "train")


def test_pytorch_lightning_package():
    pl = pytest.importorskip("pytorch_lightning")
    from xgrad_rewrite.integrations.pytorch_lightning import XGradCallback as PLCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(4, 1)
            self.flags: list[bool] = []

        def training_step(self, batch, batch_idx):
            self.flags.append(xgrad.is_predicted(self.trainer.optimizers[0]))
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    module = Tiny()
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PLCallback(s=1)],
    )
    trainer.fit(module, torch.utils.data.DataLoader(data(), batch_size=4))
    assert module.flags == [True, True, True]
    assert not xgrad.is_predicted(trainer.optimizers[0])


def test_gradscaler_skipped_step_leaves_theta_t():
    """fp16 with a GradScaler: a step skipped for an inf gradient never calls optimizer.step()
    (so the runtime's pre-hook never fires); the callback's own restore still leaves θt."""
    from lightning.pytorch.plugins import MixedPrecision

    class Poisoned(Regression):
        def __init__(self) -> None:
            super().__init__("adam")
            self.after: list[list[torch.Tensor]] = []

        def on_after_backward(self) -> None:  # before the scaler's unscale_ looks for infs
            if len(self.after) == 3:
                next(self.net.parameters()).grad.view(-1)[0] = float("inf")

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            self.after.append([p.detach().clone() for p in self.net.parameters()])

    module = Poisoned()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    precision = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer = L.Trainer(
        max_steps=5,
        accelerator="cpu",
        plugins=[precision],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[XGradCallback(s=2)],
    )
    trainer.fit(module, torch.utils.data.DataLoader(data(), batch_size=4))
    assert scaler.get_scale() == 2.0**7, "exactly the poisoned step was skipped"
    unchanged = [
        all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        for before, after in zip(module.after, module.after[1:], strict=False)
    ]
    assert unchanged == [False, False, True, False]
