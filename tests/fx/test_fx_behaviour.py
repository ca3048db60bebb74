"""FX path: no writes to weights, evaluation on θt, env overrides, errors, undo."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from support.fx_models import CNN, assert_same, batches, pair, train_eager, train_fx
from torch import nn

import xgrad_rewrite.fx as xfx


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained_cnn(steps: int = 2):
    torch.manual_seed(0)
    model = CNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xfx.predictive(model, opt, s=2)
    for x, y in batches("cnn", steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def versions(model):
    return [p._version for p in model.parameters()]


def test_forward_and_backward_never_write_the_weights():
    model, _ = trained_cnn()
    before, values = versions(model), [p.detach().clone() for p in model.parameters()]
    x, y = batches("cnn", 1)[0]
    F.cross_entropy(model(x), y).backward()
    model.eval()
    model(x)
    assert versions(model) == before
    for p, v in zip(model.parameters(), values, strict=True):
        assert torch.equal(p, v)


def test_exception_in_forward_leaves_nothing_to_clean_up():
    model, opt = trained_cnn()
    before, values = versions(model), [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 6, 6))  # wrong channel count
    assert versions(model) == before
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), values, strict=True))
    x, y = batches("cnn", 1)[0]
    F.cross_entropy(model(x), y).backward()  # and training goes on
    opt.step()


def test_batchnorm_statistics_are_updated_by_training_forwards_only():
    model, _ = trained_cnn()
    x, _ = batches("cnn", 1)[0]
    stats = copy.deepcopy(model.bn1.state_dict())
    model(x)
    assert model.bn1.num_batches_tracked == stats["num_batches_tracked"] + 1
    assert not torch.equal(model.bn1.running_mean, stats["running_mean"])
    stats = copy.deepcopy(model.bn1.state_dict())
    model.eval()
    model(x)
    for name, value in model.bn1.state_dict().items():
        assert torch.equal(value, stats[name]), name


def test_eval_and_no_grad_run_the_models_own_forward_on_theta():
    model, _ = trained_cnn()
    twin = CNN()
    twin.load_state_dict(model.state_dict())
    x, _ = batches("cnn", 1)[0]
    model.eval(), twin.eval()
    assert torch.equal(model(x), twin(x))
    model.train(), twin.train()
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
    assert not torch.allclose(model(x), twin(x))  # training forward: θ̂, not θ


def test_traced_in_training_mode_whatever_the_current_mode():
    eager, fx = pair("cnn")
    fx.eval()
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    assert not any(m.training for m in fx.modules())  # modes put back
    fx.train()
    data = batches("cnn", 3)
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_the_model_stays_the_users_model():
    torch.manual_seed(0)
    model = CNN()
    params, keys = list(model.parameters()), list(model.state_dict())
    opt = torch.optim.Adam(model.parameters())
    assert xfx.predictive(model, opt) is model
    assert isinstance(model, CNN)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert list(model.state_dict()) == keys
    assert not any("xgrad" in name for name, _ in model.named_buffers())
    assert "PredictiveForward(CNN" in repr(model.forward)


def test_tied_weights_are_predicted_once():
    _, fx = pair("tied")
    opt = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt)
    code = fx.forward.graph_module.code
    assert code.count("torch.addcmul") == len(list(fx.parameters()))
    assert code.count("embed_weight_predicted = torch.addcmul") == 1


def test_module_called_twice_reads_one_prediction():
    _, fx = pair("twice")
    xfx.predictive(fx, torch.optim.Adam(fx.parameters()))
    code = fx.forward.graph_module.code
    assert code.count("block_0_weight_predicted = torch.addcmul") == 1
    assert code.count("torch.addcmul") == len(list(fx.parameters()))


def test_lstm_and_batchnorm_run_their_own_forward_on_predicted_tensors():
    """torch.nn layers with shape checks in Python go through torch.func.functional_call."""

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 8, batch_first=True)
            self.norm = nn.BatchNorm1d(8)
            self.out = nn.Linear(8, 4)

        def forward(self, x):
            h, _ = self.lstm(x)
            return self.out(self.norm(h[:, -1]))

    torch.manual_seed(0)
    eager = Seq()
    fx = copy.deepcopy(eager)
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    assert "call_module_with" in fx.forward.graph_module.code
    gen = torch.Generator().manual_seed(3)
    data = [(torch.randn(6, 5, 8, generator=gen), torch.randint(0, 4, (6,))) for _ in range(3)]
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_xgrad_disable_and_xgrad_s_are_read_at_refresh(monkeypatch):
    eager, fx = pair("twice")
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=1)
    monkeypatch.setenv("XGRAD_S", "3")  # eager reads it at each predict, FX at each refresh
    data = batches("twice", 3)
    assert_same(train_eager(eager, opt_e, data, 1), train_fx(fx, opt_f, data))

    monkeypatch.setenv("XGRAD_DISABLE", "1")
    x, y = data[0]
    F.cross_entropy(fx(x), y).backward()
    opt_f.step()  # refresh: off
    with torch.no_grad():
        plain = fx(x)
    assert torch.equal(fx(x), plain)
    gm = fx.forward.graph_module
    assert all(not getattr(gm, r.d).any() for r in fx.forward._reads)  # d = 0, not just c


def test_weights_moved_after_wrapping():
    eager, fx = pair("twice")
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    eager.double(), fx.double()
    data = [(x.double(), y) for x, y in batches("twice", 3)]
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_untraceable_model_names_the_call_and_the_eager_path():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return x

    model = Branchy()
    with pytest.raises(xfx.UntraceableModelError) as info:
        xfx.predictive(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "Branchy" in message and "if x.sum() > 0" in message
    assert "control flow" in message  # torch.fx's own explanation is kept
    assert "xgrad.predict(optimizer" in message and "xgrad-rewrite train.py" in message
    assert "forward" not in model.__dict__  # nothing was installed


def test_hooks_on_traced_through_modules_are_refused():
    torch.manual_seed(0)
    model = CNN()
    model.head.register_forward_hook(lambda *_: None)
    with pytest.raises(xfx.UntraceableModelError, match="`head` .*hooks"):
        xfx.predictive(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_hooks_on_functional_call_layers_still_run():
    model, _ = trained_cnn()
    calls = []
    model.bn1.register_forward_hook(lambda *_: calls.append(1))
    model(batches("cnn", 1)[0][0])
    assert calls == [1]


def test_optimizer_errors():
    model = CNN()
    with pytest.raises(TypeError, match="LBFGS"):
        xfx.predictive(model, torch.optim.LBFGS(model.parameters()))
    with pytest.raises(ValueError, match="reads none of the optimizer's parameters"):
        xfx.predictive(model, torch.optim.SGD(CNN().parameters(), lr=0.1))
    with pytest.raises(ValueError):
        xfx.predictive(model, torch.optim.SGD(model.parameters(), lr=0.1), s=-1)


def test_compiled_model_is_refused():
    model = CNN()
    with pytest.raises(TypeError, match="before torch.compile"):
        xfx.predictive(torch.compile(model), torch.optim.SGD(model.parameters(), lr=0.1))


def test_runtime_exposes_fx_for_the_codemods_fx_mode():
    import xgrad_rewrite.runtime as xgrad

    assert xgrad.fx is xfx
    assert xgrad.fx.predictive is xfx.predictive


def test_remove_and_wrap_again():
    model, opt = trained_cnn()
    xfx.predictive(model, opt, s=1)  # again: replaces, one hook
    assert len(opt._optimizer_step_post_hooks) == 1
    xfx.remove(model)
    assert "forward" not in model.__dict__
    assert len(opt._optimizer_step_post_hooks) == 0
    twin = CNN()
    twin.load_state_dict(model.state_dict())
    x, _ = batches("cnn", 1)[0]
    assert torch.equal(model(x), twin(x))


def test_copies_and_pickles_are_plain_models():
    """An EMA or best-so-far copy is not the optimizer's: it runs the model's own forward."""
    import io

    model, _ = trained_cnn()
    x, _ = batches("cnn", 1)[0]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for twin in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        plain = CNN()
        plain.load_state_dict(model.state_dict())
        assert torch.equal(twin(x), plain(x))
        assert all(p is not q for p, q in zip(twin.parameters(), model.parameters(), strict=True))
        opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
        xfx.predictive(twin, opt)  # and a copy can be made predictive for its own optimizer
        F.cross_entropy(twin(x), torch.zeros(6, dtype=torch.long)).backward()
        opt.step()


def test_transformer_encoder_layers_are_predicted():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 16)
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            return self.head(self.encoder(self.embed(x)).mean(1))

    torch.manual_seed(0)
    eager = Encoder()
    fx = copy.deepcopy(eager)
    opt_e = torch.optim.AdamW(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.AdamW(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    code = fx.forward.graph_module.code
    assert code.count("torch.addcmul") == len(list(fx.parameters()))
    gen = torch.Generator().manual_seed(0)
    data = [
        (torch.randint(0, 20, (4, 7), generator=gen), torch.randint(0, 4, (4,), generator=gen))
        for _ in range(3)
    ]
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_resumed_optimizer_state_is_predicted_from_the_first_forward():
    """optimizer.load_state_dict after predictive refreshes d (a resumed checkpoint)."""
    eager, fx = pair("twice")
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(fx.parameters(), lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    data = batches("twice", 5)
    train_eager(eager, opt_e, data[:2], 2)
    fx.load_state_dict(eager.state_dict())
    opt_f.load_state_dict(copy.deepcopy(opt_e.state_dict()))  # torch shares tensors otherwise
    assert_same(train_eager(eager, opt_e, data[2:], 2), train_fx(fx, opt_f, data[2:]))
