"""The reference path's CPU settings beyond precision: NNPACK convolutions, picked layer by
layer, and SGD's fused kernel. Each must compute what PyTorch's own kernels compute, be
used only where measured faster, and be recorded as it ran."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from alexnet_course.compare import convs, settings  # noqa: E402

needs_nnpack = pytest.mark.skipif(not convs.available(),
                                  reason="NNPACK is not available here (it needs AVX2 and FMA)")  # fmt: skip


def _grads(conv: nn.Conv2d, x, g):
    x = x.detach().requires_grad_(True)
    out = conv(x)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    return (out, *torch.autograd.grad(out, [x, *params], g))


@needs_nnpack
@pytest.mark.parametrize("wgrad", [False, True])
@pytest.mark.parametrize("cin, cout, kernel, padding, bias, size", [
    (96, 64, 5, 2, True, (13, 11)),   # AlexNet's conv2 (FFT in NNPACK)
    (32, 48, 3, 1, True, (13, 11)),   # conv3 to conv5 (Winograd)
    (3, 4, 3, 0, False, (13, 11)),    # no padding, no bias
    (5, 6, (3, 5), (1, 2), True, (13, 11)),  # a rectangular kernel
    (4, 6, 5, 2, True, (27, 26)),     # an output gradient cut into 3x3 blocks for its FFT
    (4, 6, (3, 5), (1, 0), True, (30, 17)),  # blocks of two shapes, zeros at the edges
])  # fmt: skip
def test_nnpack_conv_computes_the_convolution_and_its_gradients(cin, cout, kernel, padding, bias,
                                                                 size, wgrad):  # fmt: skip
    """Output, input, weight and bias gradients agree with a float64 convolution to Winograd's
    accuracy (about 1e-5 of the scale), as closely as PyTorch's own fp32 kernels do to 1e-4;
    with NNPACK computing the weight gradient (``wgrad``) too."""
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=bias)
    x = torch.randn(4, cin, *size)
    g = _out_grad(conv, x)
    ref = _grads(copy.deepcopy(conv).double(), x.double(), g.double())
    assert convs.eligible(conv)
    assert convs.use_nnpack(conv, [""], [""] if wgrad else []) == [""] and convs.uses_nnpack(conv)
    got = _grads(conv, x, g)
    for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), got, ref):
        assert a.dtype == torch.float32 and a.shape == b.shape, name
        err = ((a.double() - b).abs().max() / b.abs().max()).item()
        assert err < 1e-4, (name, err)


def _out_grad(conv, x):
    with torch.no_grad():
        shape = nn.Conv2d.forward(conv, x).shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(3, 4, 3, stride=2),
    lambda: nn.Conv2d(4, 4, 3, groups=2),
    lambda: nn.Conv2d(3, 4, 3, dilation=2),
    lambda: nn.Conv2d(3, 4, 3, padding="same"),
    lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
    lambda: nn.Conv2d(3, 4, 3, padding=3),
    lambda: nn.Conv2d(3, 4, 3).double(),
    lambda: nn.Conv1d(3, 4, 3),
    lambda: nn.Linear(3, 4),
])  # fmt: skip
def test_what_nnpack_cannot_compute_is_left_alone(make):
    module = make()
    assert not convs.eligible(module)
    with pytest.raises(ValueError, match="not a convolution NNPACK can compute"):
        convs.use_nnpack(module, [""])


def test_a_conv_subclass_with_its_own_forward_is_not_eligible():
    class Scaled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    assert not convs.eligible(Scaled(3, 4, 3))


@needs_nnpack
def test_nnpack_layers_keep_state_dict_copies_and_fall_back_where_they_must():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
    keys = list(model.state_dict())
    assert convs.use_nnpack(model, ["0", "2"]) == ["0", "2"]
    assert list(model.state_dict()) == keys
    twin = copy.deepcopy(model)  # a copy's layers compute with the copy's weights
    assert all(convs.uses_nnpack(twin[i]) for i in (0, 2))
    with torch.no_grad():
        twin[0].weight.mul_(2)
    x = torch.randn(2, 3, 9, 9)
    assert not torch.allclose(twin(x), model(x))
    # an unbatched input, and bf16 autocast, go to PyTorch's own kernels
    assert model(x[0]).shape == (4, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
    convs.restore(model)
    assert not any(convs.uses_nnpack(m) for m in model.modules())


@needs_nnpack
def test_pick_layers_times_each_layer_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3))  # fmt: skip
    model.train()
    before = copy.deepcopy(model.state_dict())
    picked = convs.pick_layers(model, torch.randn(4, 3, 32, 32), gain=1.0)
    assert set(picked) == {"3", "5"}  # the stride-2 convolution is not NNPACK's
    for r in picked.values():  # every mode timed; the fastest NNPACK mode used where faster
        assert r["onednn_ms"] > 0 and r["nnpack_ms"] > 0 and r["nnpack_wgrad_ms"] > 0
        best = min(r["nnpack_ms"], r["nnpack_wgrad_ms"])
        assert r["nnpack"] == (best <= r["onednn_ms"])
        assert r["wgrad"] == (r["nnpack"] and r["nnpack_wgrad_ms"] < r["nnpack_ms"])
    assert convs.chosen(picked) == [k for k, r in picked.items() if r["nnpack"]]
    twin = copy.deepcopy(model)
    assert convs.apply(twin, picked) == convs.chosen(picked)
    for k, r in picked.items():
        m = dict(twin.named_modules())[k]
        assert convs.uses_nnpack(m) == r["nnpack"]
        assert getattr(m, "_nnpack_wgrad", False) == r["wgrad"]
    assert model.training and not any(convs.uses_nnpack(m) for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's stats too
    assert all(p.grad is None for p in model.parameters())
    # an impossible gain: no layer is chosen
    assert convs.chosen(convs.pick_layers(model, torch.randn(4, 3, 32, 32), gain=1e9)) == []


def test_pick_layers_is_empty_where_nnpack_is_not_available(monkeypatch):
    monkeypatch.setattr(convs, "available", lambda: False)
    assert convs.pick_layers(nn.Conv2d(3, 4, 3), torch.randn(2, 3, 8, 8)) == {}


def _fake_step(nnpack_s: float, plain_s: float = 1.0):
    """A stand-in for settings._step_seconds: a model with NNPACK layers steps in
    ``nnpack_s``, any other in ``plain_s``."""

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        uses = any(convs.uses_nnpack(m) for m in model.modules())
        return [nnpack_s if uses else plain_s] * steps

    return measure


def _fake_pick(faster: bool):
    def pick(model, x):
        return {"": {"onednn_ms": 10.0, "nnpack_ms": 5.0 if faster else 20.0, "nnpack": faster}}

    return pick


@pytest.mark.parametrize("layer_faster, step_s, used", [
    (True, 0.5, True),     # faster per layer and per step: used
    (True, 0.99, False),   # faster per layer, but the step gains under 5%: not used
    (False, 0.5, False),   # slower per layer: not even measured as a whole step
])  # fmt: skip
def test_settings_use_nnpack_only_where_the_whole_step_measures_faster(layer_faster, step_s, used):
    if not convs.available():
        pytest.skip("NNPACK is not available here (it needs AVX2 and FMA)")
    got = settings.measure_settings(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"),
                                    batch_size=2, size=8, measure=_fake_step(step_s),
                                    pick_convs=_fake_pick(layer_faster))  # fmt: skip
    assert got["nnpack"] == ([""] if used else [])
    assert got["nnpack_layers"] == _fake_pick(layer_faster)(None, None)
    assert ("fp32+nnpack" in got["step_seconds"]) == layer_faster
    assert settings.describe_key(got).endswith("+nnpack") == used
    assert ("NNPACK convolutions" in settings.describe(got)) == used
    assert "NNPACK" in got["reason"]
    off = settings.measure_settings(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"),
                                    batch_size=2, size=8, measure=_fake_step(step_s),
                                    pick_convs=_fake_pick(layer_faster), allow_nnpack=False)  # fmt: skip
    assert off["nnpack"] == [] and off["nnpack_layers"] == {} and "NNPACK not allowed" in off["reason"]


def _train(opt_kw: dict, fuse: bool, steps: int = 4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, **opt_kw)
    if fuse:
        assert settings.use_fused_sgd(opt)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


@pytest.mark.skipif(not settings.fused_sgd_available(torch.device("cpu")),
                    reason="this torch has no fused SGD for CPUs")  # fmt: skip
@pytest.mark.parametrize("opt_kw", [{}, settings.SGD_ARGS, {"momentum": 0.9, "nesterov": True}])
def test_fused_sgd_makes_the_same_update(opt_kw):
    plain, _ = _train(opt_kw, fuse=False)
    fused, opt = _train(opt_kw, fuse=True)
    assert all(g["fused"] for g in opt.param_groups)
    for a, b in zip(plain.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # it survives a checkpoint: a new optimizer loading the state steps fused too
    again = torch.optim.SGD(fused.parameters(), lr=0.1, **opt_kw)
    again.load_state_dict(opt.state_dict())
    assert all(g["fused"] for g in again.param_groups)


def test_fused_sgd_leaves_other_optimizers_alone():
    p = [torch.zeros(2, requires_grad=True)]
    assert settings.use_fused_sgd(torch.optim.Adam(p)) is False

    class MySGD(torch.optim.SGD):
        pass

    assert settings.use_fused_sgd(MySGD(p, lr=0.1)) is False


def test_fused_sgd_is_measured_and_recorded():
    got = settings.measure_fused_sgd(nn.Linear(64, 64), torch.device("cpu"), steps=1, rounds=1)
    if not settings.fused_sgd_available(torch.device("cpu")):
        assert got == {"fused_sgd": False, "sgd_step_ms": {}}
        return
    ms = got["sgd_step_ms"]
    assert set(ms) == {"default", "fused"} and min(ms.values()) > 0
    assert got["fused_sgd"] == (ms["fused"] * settings.MIN_GAIN <= ms["default"])


@needs_nnpack
def test_torch_compile_traces_oneDNN_convolutions_in_place_of_nnpack():
    """torch.compile cannot trace NNPACK's convolution (it has no kernel for fake tensors): a
    compiled model with NNPACK layers computes them with PyTorch's own kernels."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 9, 9)
    want = model(x)
    convs.use_nnpack(model, ["0", "2"], ["2"])
    got = torch.compile(model, backend="eager")(x)
    torch.testing.assert_close(got, want)


@needs_nnpack
@pytest.mark.parametrize("compiled_s, used", [(0.25, True), (1.0, False)])
def test_compile_measured_against_nnpack_replaces_it_only_when_faster(compiled_s, used):
    """Eager with NNPACK's layers against compiled on oneDNN's: whichever measures faster is
    what the arm trains with, and the record says so."""
    chosen = {"autocast": None, "channels_last": False, "nnpack": [""],
              "nnpack_layers": {"": {"nnpack": True, "wgrad": False}},
              "step_seconds": {"fp32": 1.0, "fp32+nnpack": 0.5}, "reason": "x"}  # fmt: skip

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            assert not any(convs.uses_nnpack(m) for m in model.modules())
            return [compiled_s] * steps
        assert convs.uses_nnpack(model)  # the eager model is the chosen one, NNPACK and all
        return [0.5] * steps

    got = settings.measure_compile(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"), chosen,
                                   batch_size=2, size=8, measure=measure, backend="eager")  # fmt: skip
    assert got["step_seconds"]["fp32+compile"] == compiled_s
    assert (got["compile"] == "eager") == used
    assert got["nnpack"] == ([] if used else [""])
    key = settings.describe_key(got) + ("+compile" if got["compile"] else "")
    assert got["step_seconds"][key] == (compiled_s if used else 0.5)
