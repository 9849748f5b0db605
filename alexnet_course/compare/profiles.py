"""The comparison's arms and profiles: what runs, and on what budget. Fixed at import;
nothing changes them at run time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ARMS = ("torch-scratch", "torch-tv-scratch", "torch-pretrained", "keras-scratch",
        "keras-pretrained")  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """One budget for every arm."""

    name: str
    synthetic: bool
    input_size: int
    epochs: int
    batch_size: int
    lr: float
    norm: str
    bf16: bool
    val_size: int
    train_limit: int | None = None  # train on N of the training images (a stratified draw)
    # how the scratch arms start: "pytorch-default" (fan-in uniform, PyTorch's own layer
    # init) or "paper" (N(0, 0.01), biases of 1, lesson 03's init_paper_weights)
    scratch_init: str = "pytorch-default"
    # torch-tv-scratch: "he" (Kaiming normal, zero biases) or "pytorch-default". torchvision's
    # AlexNet has no normalisation layer, and under PyTorch's default init its signal shrinks
    # layer by layer: in a probe it stayed at chance for 3 epochs on 10k images (validation
    # accuracy 0.12), against 0.26 after one epoch with He init.
    tv_scratch_init: str = "he"
    warmup: float = 0.3  # share of the steps the learning rate warms up over
    # measure bf16 autocast (where the hardware has it) and channels_last before the torch
    # arms and use what is fastest here (compare/settings.py); off: fp32, contiguous
    tune: bool = True
    # write a checkpoint after every epoch, for --resume (the smoke profile runs in seconds
    # and keeps its best weights in memory instead: one torch checkpoint is ~700 MB)
    checkpoints: bool = True
    # measure torch.compile on top of the tuned settings and use it where it gains 5% and
    # compiles within settings.COMPILE_LIMIT_S (a tuned profile only)
    try_compile: bool = True


PROFILES = {
    # generated data, seconds: runs in the test suite
    "smoke": Profile("smoke", True, 67, 2, 32, 0.01, "batch", False, 100, train_limit=192,
                     tune=False, checkpoints=False, try_compile=False),
    # real CIFAR-10 on a 2-core CPU: 67 px (the smallest input the paper's layer stack takes),
    # bf16 autocast for torch where this CPU has bf16 units and it measures faster,
    # BatchNorm (trains in few epochs), 3 epochs. The paper's init
    # (biases of 1 in fc6/fc7) under BatchNorm learnt much slower in a probe (validation
    # accuracy 0.24 against 0.43 after 80 steps on 10k images), hence PyTorch's default.
    "cpu": Profile("cpu", False, 67, 3, 128, 0.02, "batch", True, 5000),
    # the seed's setting at full resolution, on a GPU
    "gpu": Profile("gpu", False, 227, 30, 128, 0.02, "batch", True, 5000),
}
# gpu-check's rehearsal on a CPU (GPU_CHECK_DRY=1): the gpu profile, shrunk to seconds
PROFILES["gpu-dry"] = dataclasses.replace(PROFILES["gpu"], name="gpu-dry", input_size=67,
                                          batch_size=16, val_size=10, tune=False,
                                          checkpoints=False, bf16=False)  # fmt: skip
