"""The arms' models, built from the lessons' code, and what every arm shares: the learning
rate's shape and the forward under bf16 autocast."""

from __future__ import annotations

import functools
import math

from alexnet_course import CourseError


class ArmSkipped(Exception):
    """An arm cannot run here; the message is the reason."""


def lr_factor(step: int, total: int, warmup: float) -> float:
    """The one learning-rate shape every arm follows, as a factor of its peak rate: linear
    warm-up from 1/25 of the peak over the first ``warmup`` share of the steps, then cosine
    decay to 0 (the shape of a one-cycle schedule, without momentum cycling)."""
    w = max(1, int(warmup * total))
    if step < w:
        return 0.04 + 0.96 * step / w
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def keras_schedule(peak: float, total: int, warmup: float):
    """:func:`lr_factor` as a Keras schedule (built lazily: Keras loads only for Keras arms)."""
    import keras
    from keras import ops

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            w = float(max(1, int(warmup * total)))
            up = 0.04 + 0.96 * step / w
            t = ops.minimum(1.0, (step - w) / float(max(1, total - w)))
            down = 0.5 * (1.0 + ops.cos(math.pi * t))
            return peak * ops.where(step < w, up, down)

    return Schedule()


def scratch_torch_alexnet(profile, num_classes: int, code):
    """Lesson 03's AlexNet with the profile's init. Both scratch arms call this right after
    seeding, so keras-scratch starts from the very weights torch-scratch starts from."""
    from torch import nn

    model = code.alexnet.AlexNet(num_classes=num_classes, norm=profile.norm)
    if profile.scratch_init == "pytorch-default":
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.reset_parameters()
    elif profile.scratch_init != "paper":
        raise CourseError(f"unknown scratch_init {profile.scratch_init!r}")
    return model


def require_weights(weights, download: bool) -> None:
    """The ImageNet weights in the cache (downloaded where allowed), else :class:`ArmSkipped`."""
    from alexnet_course.weights import WeightsError, ensure_weights

    try:
        ensure_weights(weights, download=download)
    except WeightsError as e:
        raise ArmSkipped(str(e)) from None


def torch_model(arm: str, ctx):
    """``(model, mean, std, make_optimizer or None)`` of a torch arm: lesson 03's AlexNet,
    torchvision's architecture from scratch, or lesson 02's pretrained model with its own
    preprocessing and optimizer. The scratch arms normalise with lesson 01's statistics of
    the training images."""
    profile, code, k = ctx.profile, ctx.code, ctx.data.num_classes
    mean, std = ctx.normalisation["cifar10"]["mean"], ctx.normalisation["cifar10"]["std"]
    if arm == "torch-scratch":
        return scratch_torch_alexnet(profile, k, code), mean, std, None
    if arm == "torch-tv-scratch":
        import torchvision
        from torch import nn

        model = torchvision.models.alexnet(num_classes=k)
        if profile.tv_scratch_init == "he":
            for layer in model.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        return model, mean, std, None
    pretrained = code.pretrained
    require_weights(pretrained.WEIGHTS, not ctx.options.no_download)
    model = pretrained.build_model(num_classes=k, mode="finetune")
    pre = ctx.normalisation["imagenet"]
    return model, pre["mean"], pre["std"], pretrained.make_optimizer


def keras_model(arm: str, ctx):
    """``(model, mean, std)`` of a Keras arm: keras-scratch starts from torch-scratch's
    initial weights, ported by lesson 04; keras-pretrained from torchvision's ImageNet weights
    with a new head, ported, normalised with lesson 02's preprocessing."""
    import torch
    import torchvision

    ka, k, size = ctx.code.keras_alexnet, ctx.data.num_classes, ctx.profile.input_size
    if arm == "keras-scratch":
        start_weights = scratch_torch_alexnet(ctx.profile, k, ctx.code).eval()
        model = ka.build_alexnet(k, ctx.profile.norm, size)
        ka.port_torch_weights(start_weights, model)
        norm = ctx.normalisation["cifar10"]
        return model, norm["mean"], norm["std"]
    tv = torchvision.models.alexnet(weights=torchvision.models.AlexNet_Weights.IMAGENET1K_V1)
    tv.classifier[6] = torch.nn.Linear(4096, k)
    model = ka.build_torchvision_alexnet(k, size)
    ka.port_torch_weights(tv.eval(), model)
    norm = ctx.normalisation["imagenet"]
    return model, norm["mean"], norm["std"]


def autocast_forward(model, dtype=None):
    """Run ``model``'s forward (and only it) under bf16 autocast, one region per call.

    One ``torch.autocast`` region around a whole epoch does not work: autocast caches the
    low-precision copies of the weights until the outermost region exits, so every step of
    the epoch would run the forward with the weights of the first step, and the network
    would not learn (this runner's first ``cpu`` run did exactly that). Wrapping the
    forward leaves the state dict and the lesson's training loop untouched.
    """
    import torch

    device = next(model.parameters()).device
    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16):
            return inner(*args, **kwargs)

    model.forward = forward
    return model


def new_history() -> dict[str, list]:
    """Per-epoch curves, the same keys for every arm."""
    return {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                            "epoch_seconds")}  # fmt: skip


TRAIN_EVAL_IMAGES = 5000  # keras arms: training accuracy measured on this many training images
TRAIN_ACCURACY_KIND = {
    "torch": "running accuracy over the epoch's batches (training mode, augmented)",
    "keras": f"inference mode on the first {TRAIN_EVAL_IMAGES} training images, not augmented",
}


def arm_result(arm, accuracy, loss, per_class, confusion, history, n_train_images, params,
               trainable) -> dict:  # fmt: skip
    """An arm's results, the same keys for every arm (provenance and plan are added later)."""
    seconds = float(sum(history["epoch_seconds"]))
    epochs = len(history["epoch_seconds"])
    return {
        "arm": arm,
        "status": "ok",
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": [[int(c) for c in row] for row in confusion],
        "history": {k: [None if x is None else float(x) for x in v] for k, v in history.items()},
        "train_accuracy_kind": TRAIN_ACCURACY_KIND[arm.split("-")[0]],
        "train_seconds": seconds,
        "images_per_second": epochs * n_train_images / seconds if seconds else 0.0,
        "parameters": int(params),
        "trainable_parameters": int(trainable),
    }


def share_linear_weights(model, source) -> None:
    """Give ``model``'s Linear layers ``source``'s parameters (the layers of the same name and
    shape). The candidates :func:`measure_settings` times differ only in how they convolve,
    while the dense layers hold most of AlexNet's weights (55 of its 58 M): shared, four
    candidates hold one set of them instead of four (0.66 GB less, #30). A step takes as long
    whatever the weights' values."""
    import torch

    theirs = dict(source.named_modules())
    for name, m in model.named_modules():
        s = theirs.get(name)
        if (m is not s and isinstance(m, torch.nn.Linear) and isinstance(s, torch.nn.Linear)
                and m.weight.shape == s.weight.shape):  # fmt: skip
            m.weight = s.weight
            if m.bias is not None and s.bias is not None and m.bias.shape == s.bias.shape:
                m.bias = s.bias
