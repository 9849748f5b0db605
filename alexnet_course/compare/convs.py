"""NNPACK convolutions: the Winograd and FFT algorithms for a CPU's stride-1 convolutions,
used layer by layer where a measurement on this machine shows them faster.

On a CPU, PyTorch runs every convolution with oneDNN's direct (or im2col) kernels. On a CPU
with AVX-512 those are hard to beat; on one with AVX2 only, they run at about half the speed,
while NNPACK's Winograd F(6x6, 3x3) and FFT kernels do fewer multiplications for the same
convolution. On this course's 2-core AMD EPYC limited to AVX2, the forward of AlexNet's 5x5
and 3x3 convolutions at 224 px (batch 32) took about half oneDNN's time, and so did their
input gradient (a convolution too: the output gradient with the kernel flipped); with
AVX-512 NNPACK was slower. Hence a measurement, never an assumption:

* :func:`available`: PyTorch was built with NNPACK and the CPU can run it (AVX2 and FMA);
* :func:`pick_layers` times each eligible convolution of a model (its forward and its
  backward, at the input it actually gets) with oneDNN and with NNPACK, and picks the layers
  where NNPACK is at least ``gain`` times faster;
* :func:`use_nnpack` makes those layers compute with NNPACK: the forward and the input
  gradient; the weight and bias gradients stay with PyTorch's own kernels.

The layers' parameters, state dict and hooks do not change, so checkpoints and evaluation are
as before. Winograd's fp32 results differ from a direct convolution's by about 1e-5 of the
output's scale (a direct convolution's own rounding is about 1e-7): far below what training
notices, and what cuDNN's Winograd kernels do on a GPU too.
"""

from __future__ import annotations

import time
from statistics import median

import torch
from torch import nn


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


class _NNPACKConv(torch.autograd.Function):
    """A stride-1 convolution computed by NNPACK, forward and input gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        x = x.contiguous()  # NNPACK reads NCHW
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = list(padding), bias is not None
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
        if want_w or want_b:
            _, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1],
                ctx.padding, [1, 1], False, [0, 0], 1, [False, want_w, want_b])  # fmt: skip
        return gx, gw, gb, None


def _nnpack_conv_forward(self, x, weight, bias):
    """``Conv2d._conv_forward`` for a layer :func:`use_nnpack` chose; anything NNPACK does not
    compute (an unbatched input, another dtype, autocast) goes to PyTorch's own kernels."""
    if (x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu"
            or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):  # fmt: skip
        return nn.Conv2d._conv_forward(self, x, weight, bias)
    return _NNPACKConv.apply(x, weight, bias, self.padding)


def use_nnpack(model: nn.Module, names) -> list[str]:
    """Make the convolutions of ``model`` named in ``names`` compute with NNPACK; returns
    the names it changed (every one must be :func:`eligible`)."""
    modules = dict(model.named_modules())
    done = []
    for name in names:
        m = modules.get(name)
        if m is None or not eligible(m):
            raise ValueError(f"{name!r} is not a convolution NNPACK can compute in this model")
        m._conv_forward = _nnpack_conv_forward.__get__(m)
        done.append(name)
    return done


def uses_nnpack(module: nn.Module) -> bool:
    f = module.__dict__.get("_conv_forward")
    return getattr(f, "__func__", None) is _nnpack_conv_forward


def restore(model: nn.Module) -> None:
    """Undo :func:`use_nnpack` on every layer of ``model``."""
    for m in model.modules():
        if uses_nnpack(m):
            del m._conv_forward


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


def pick_layers(model: nn.Module, x, *, gain: float = 1.05, reps: int = 3,
                rounds: int = 2) -> dict[str, dict]:  # fmt: skip
    """Time every eligible convolution of ``model`` at the input ``x`` gives it, with oneDNN
    and with NNPACK, in turn ``rounds`` times (``reps`` forward-and-backward passes each);
    returns ``{name: {"onednn_ms", "nnpack_ms", "nnpack": used}}``, with ``nnpack`` true
    where NNPACK's median is at least ``gain`` times faster. Empty where NNPACK is not
    :func:`available`. ``model`` is left as it was."""
    if not available() or x.device.type != "cpu":
        return {}
    inputs = _layer_inputs(model, x)
    modules = dict(model.named_modules())
    picked = {}
    for name, inp in inputs.items():
        conv = modules[name]
        t = {"onednn": [], "nnpack": []}
        try:
            for _ in range(rounds):
                t["onednn"] += _fwd_bwd_seconds(conv, inp, reps=reps)
                use_nnpack(model, [name])
                try:
                    t["nnpack"] += _fwd_bwd_seconds(conv, inp, reps=reps)
                finally:
                    del conv._conv_forward
        except RuntimeError:  # NNPACK refused this shape: the layer stays with oneDNN
            continue
        a, b = median(t["onednn"]), median(t["nnpack"])
        picked[name] = {"onednn_ms": round(a * 1e3, 2), "nnpack_ms": round(b * 1e3, 2),
                        "nnpack": b * gain <= a}  # fmt: skip
    return picked


def chosen(picked: dict[str, dict]) -> list[str]:
    """The layer names :func:`pick_layers` chose NNPACK for."""
    return [name for name, r in picked.items() if r["nnpack"]]
