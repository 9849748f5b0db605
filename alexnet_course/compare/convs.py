"""NNPACK convolutions: the Winograd and FFT algorithms for a CPU's stride-1 convolutions,
used layer by layer where a measurement on this machine shows them faster.

On a CPU, PyTorch runs every convolution with oneDNN's direct kernels, which already run
near the vector units' peak: what is left to gain is arithmetic. NNPACK's Winograd
F(6x6, 3x3) and FFT kernels do fewer multiplications for the same convolution, and its
kernels are written for AVX2. On a CPU with AVX2 only they can beat oneDNN's in AlexNet's
5x5 and 3x3 convolutions, forward and input gradient alike (a convolution too: the output
gradient with the kernel flipped); with AVX-512 oneDNN's kernels can win instead, and on
small images (the ``cpu`` profile's 67 px) the transforms cost more than they save.
``alexnet-course bench``'s ``+nnpack`` row measures it, layer by layer. Hence a
measurement, never an assumption:

* :func:`available`: PyTorch was built with NNPACK and the CPU can run it (AVX2 and FMA);
* :func:`pick_layers` times each eligible convolution of a model (its forward and its
  backward, at the input it actually gets) with oneDNN and with NNPACK, and picks the layers
  where NNPACK is at least ``gain`` times faster;
* :func:`use_nnpack` makes those layers compute with NNPACK: the forward and the input
  gradient, and where it measured faster the weight gradient too (a convolution of the
  input with the output gradient as its kernel, cut into blocks NNPACK's 16x16 FFT takes).
  Elsewhere the weight and bias gradients stay with PyTorch's own kernels.

The layers' parameters, state dict and hooks do not change, so checkpoints and evaluation are
as before. Winograd's fp32 rounding error is larger than a direct convolution's (a test holds
it, and the gradients, within 1e-4 of the output's scale against a float64 convolution): far
below what training notices, and what cuDNN's Winograd kernels do on a GPU too.
"""

from __future__ import annotations

import math
import time
from statistics import median

import torch
from torch import nn
from torch.nn import functional as F

FFT_TILE = 16  # NNPACK's largest FFT tile: a kernel of up to 16x16


def available() -> bool:
    """Whether this PyTorch has NNPACK and this CPU runs it (NNPACK needs AVX2 and FMA);
    also initialises NNPACK, which its convolution needs first."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


def eligible(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (not a subclass with its own forward) that NNPACK can compute:
    stride 1, no dilation, no groups, zero padding smaller than the kernel, fp32 on a CPU."""
    if not isinstance(module, nn.Conv2d) or type(module)._conv_forward is not nn.Conv2d._conv_forward:
        return False
    if type(module).forward is not nn.Conv2d.forward:
        return False
    pad = module.padding
    return (module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros" and isinstance(pad, tuple)
            and all(p < k for p, k in zip(pad, module.kernel_size))
            and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu")  # fmt: skip


def weight_grad(x, grad, kernel_size, padding):
    """The weight gradient of a stride-1 convolution, computed by NNPACK: for each output
    channel o and input channel c, the correlation of the padded input with the output
    gradient, summed over the batch. That is a convolution whose batch is the input's
    channels, whose channels are the batch, and whose kernel is the output gradient; NNPACK
    takes kernels of up to :data:`FFT_TILE` pixels, so the output gradient is cut into blocks
    (their sums are more channels), each small enough that one FFT tile gives the whole
    ``kernel_size`` result."""
    (kh, kw), (ph, pw) = kernel_size, padding
    n, c = x.shape[:2]
    o, ho, wo = grad.shape[1:]
    nbh, nbw = math.ceil(ho / (FFT_TILE + 1 - kh)), math.ceil(wo / (FFT_TILE + 1 - kw))
    bh, bw = math.ceil(ho / nbh), math.ceil(wo / nbw)
    grad = F.pad(grad, (0, nbw * bw - wo, 0, nbh * bh - ho))  # zeros add nothing
    xp = F.pad(x, (pw, pw + nbw * bw - wo, ph, ph + nbh * bh - ho))
    xb = xp.unfold(2, bh + kh - 1, bh).unfold(3, bw + kw - 1, bw)  # n, c, nbh, nbw, rows, cols
    xb = xb.permute(1, 0, 2, 3, 4, 5).reshape(c, n * nbh * nbw, bh + kh - 1, bw + kw - 1)
    gb = grad.reshape(n, o, nbh, bh, nbw, bw).permute(1, 0, 2, 4, 3, 5)
    gb = gb.reshape(o, n * nbh * nbw, bh, bw)
    return torch._nnpack_spatial_convolution(xb, gb, None, [0, 0], [1, 1]).transpose(0, 1)


class _NNPACKConv(torch.autograd.Function):
    """A stride-1 convolution computed by NNPACK: forward and input gradient, and the weight
    gradient too with ``wgrad``."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding, wgrad):
        x = x.contiguous()  # NNPACK reads NCHW
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias, ctx.wgrad = list(padding), bias is not None, wgrad
        return torch._nnpack_spatial_convolution(x, weight.contiguous(), bias, ctx.padding, [1, 1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            # the input gradient is the output gradient convolved with the kernel flipped in
            # space and transposed in channels, padded by kernel - 1 - padding (stride 1)
            w_t = weight.flip(2, 3).transpose(0, 1).contiguous()
            pad = [k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding)]
            gx = torch._nnpack_spatial_convolution(grad, w_t, None, pad, [1, 1])
        want_w, want_b = ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.wgrad:
            gw = weight_grad(x, grad, weight.shape[2:], ctx.padding) if want_w else None
            gb = grad.sum((0, 2, 3)) if want_b else None
        elif want_w or want_b:
            _, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1],
                ctx.padding, [1, 1], False, [0, 0], 1, [False, want_w, want_b])  # fmt: skip
        return gx, gw, gb, None, None


def _nnpack_conv_forward(self, x, weight, bias):
    """``Conv2d._conv_forward`` for a layer :func:`use_nnpack` chose; anything NNPACK does not
    compute (an unbatched input, another dtype, autocast) goes to PyTorch's own kernels, and
    so does a model ``torch.compile`` traces (NNPACK's convolution has no kernel for its fake
    tensors)."""
    if (x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu"
            or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
            or torch.compiler.is_compiling()):  # fmt: skip
        return nn.Conv2d._conv_forward(self, x, weight, bias)
    return _NNPACKConv.apply(x, weight, bias, self.padding, self._nnpack_wgrad)


def use_nnpack(model: nn.Module, names, wgrad=()) -> list[str]:
    """Make the convolutions of ``model`` named in ``names`` compute with NNPACK, those in
    ``wgrad`` their weight gradient too; returns the names it changed (every one must be
    :func:`eligible`)."""
    modules = dict(model.named_modules())
    done = []
    for name in names:
        m = modules.get(name)
        if m is None or not eligible(m):
            raise ValueError(f"{name!r} is not a convolution NNPACK can compute in this model")
        m._conv_forward = _nnpack_conv_forward.__get__(m)
        m._nnpack_wgrad = name in wgrad
        done.append(name)
    return done


def apply(model: nn.Module, picked: dict[str, dict]) -> list[str]:
    """:func:`use_nnpack` as :func:`pick_layers` chose; returns the layers that use NNPACK."""
    return use_nnpack(model, chosen(picked), [k for k, r in picked.items() if r.get("wgrad")])


def uses_nnpack(module: nn.Module) -> bool:
    f = module.__dict__.get("_conv_forward")
    return getattr(f, "__func__", None) is _nnpack_conv_forward


def restore(model: nn.Module) -> None:
    """Undo :func:`use_nnpack` on every layer of ``model``."""
    for m in model.modules():
        if uses_nnpack(m):
            del m._conv_forward, m._nnpack_wgrad


def _layer_inputs(model: nn.Module, x) -> dict[str, torch.Tensor]:
    """The input each eligible convolution of ``model`` gets from ``x`` (one forward in
    evaluation mode, so that BatchNorm's running statistics do not move)."""
    inputs, hooks = {}, []

    def keep(name: str):
        def hook(_module, args):
            inputs[name] = args[0].detach().clone()

        return hook

    for name, m in model.named_modules():
        if eligible(m):
            hooks.append(m.register_forward_pre_hook(keep(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return inputs


def _fwd_bwd_seconds(conv: nn.Module, x, *, reps: int) -> list[float]:
    """Seconds for one forward and backward of ``conv`` on ``x`` (gradients of the input,
    weight and bias, as training takes them; the layer's ``.grad`` is left alone)."""
    x = x.detach().requires_grad_(True)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    out = conv(x)
    g = torch.ones_like(out)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = conv(x)
        torch.autograd.grad(out, [x, *params], g)
        times.append(time.perf_counter() - t0)
    return times


MODES = {"onednn": None, "nnpack": False, "nnpack_wgrad": True}  # mode: NNPACK's weight grad


def _time_mode(model, name: str, conv, inp, mode: str, reps: int) -> list[float]:
    wgrad = MODES[mode]
    if wgrad is None:
        return _fwd_bwd_seconds(conv, inp, reps=reps)
    use_nnpack(model, [name], [name] if wgrad else ())
    try:
        return _fwd_bwd_seconds(conv, inp, reps=reps)
    finally:
        restore(conv)


def pick_layers(model: nn.Module, x, *, gain: float = 1.05, reps: int = 3,
                rounds: int = 2) -> dict[str, dict]:  # fmt: skip
    """Time every eligible convolution of ``model`` at the input ``x`` gives it, forward and
    backward, in each of :data:`MODES` (oneDNN; NNPACK for the forward and input gradient;
    NNPACK for the weight gradient too), in turn ``rounds`` times of ``reps`` passes each.

    Returns ``{name: {"onednn_ms", "nnpack_ms", "nnpack_wgrad_ms", "nnpack", "wgrad"}}``:
    ``nnpack`` is true where NNPACK's faster mode's median is at least ``gain`` times
    oneDNN's, and ``wgrad`` where that mode computes the weight gradient too. A mode NNPACK
    refuses for a layer's shape is left out (``None``). Empty where NNPACK is not
    :func:`available`. ``model`` is left as it was."""
    if not available() or x.device.type != "cpu":
        return {}
    inputs = _layer_inputs(model, x)
    modules = dict(model.named_modules())
    picked = {}
    for name, inp in inputs.items():
        conv = modules[name]
        t = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in list(t):
                try:
                    t[mode] += _time_mode(model, name, conv, inp, mode, reps)
                except RuntimeError:  # NNPACK refused this shape in this mode
                    del t[mode]
        ms = {m: round(median(t[m]) * 1e3, 3) if m in t else None for m in MODES}  # recorded as used
        best = min((m for m in ("nnpack", "nnpack_wgrad") if ms[m] is not None),
                   key=ms.get, default=None)  # fmt: skip
        use = best is not None and ms[best] * gain <= ms["onednn"]
        picked[name] = {f"{m}_ms": v for m, v in ms.items()}
        picked[name] |= {"nnpack": use, "wgrad": use and best == "nnpack_wgrad"}
    return picked


def chosen(picked: dict[str, dict]) -> list[str]:
    """The layer names :func:`pick_layers` chose NNPACK for."""
    return [name for name, r in picked.items() if r["nnpack"]]


def summary(picked: dict[str, dict]) -> str:
    """One line per layer of what :func:`pick_layers` measured and chose."""

    def ms(v):
        return "-" if v is None else f"{v:.0f}"

    return "; ".join(
        f"{k} {ms(r['onednn_ms'])} / {ms(r.get('nnpack_ms'))} / {ms(r.get('nnpack_wgrad_ms'))} ms "
        f"-> {'NNPACK with its weight gradient' if r.get('wgrad') else 'NNPACK' if r['nnpack'] else 'oneDNN'}"
        for k, r in picked.items())  # fmt: skip
