"""``alexnet-course compare``: run the reference solutions end to end on one profile.

This first version runs the data pipeline and the ``torch-scratch`` arm (lesson 03's AlexNet
and training loop, imported from ``solutions/`` or, with ``--impl lessons``, from the
learner's files: the runner never re-implements a model). The other arms are listed and
reported as not run, with the reason, until their lessons land.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from alexnet_course import CourseError, __version__

ARMS = ("torch-scratch", "torch-tv-scratch", "torch-pretrained", "keras-scratch",
        "keras-pretrained")  # fmt: skip
IMPLEMENTED = ("torch-scratch",)


@dataclass(frozen=True)
class Profile:
    """One budget for every arm: same data, split, augmentation, input size and epochs."""

    name: str
    synthetic: bool
    input_size: int
    epochs: int
    batch_size: int
    lr: float
    norm: str
    bf16: bool
    val_size: int
    train_limit: int | None = None  # use only the first N training images (smoke)


PROFILES = {
    "smoke": Profile("smoke", True, 67, 2, 32, 0.01, "batch", False, 100),
    "cpu": Profile("cpu", False, 67, 3, 128, 0.02, "batch", True, 5000),
    "gpu": Profile("gpu", False, 227, 30, 128, 0.02, "batch", True, 5000),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="smoke (generated data, seconds), cpu (real CIFAR-10, < 60 min on 2 "
                        "cores), gpu (224/227 px); default: gpu with CUDA, else cpu")  # fmt: skip
    p.add_argument("--arms", default=",".join(ARMS),
                   help=f"comma-separated arms to run (default: all of {', '.join(ARMS)})")
    p.add_argument("--out", type=Path, default=Path("runs/compare"),
                   help="output folder (default runs/compare)")
    p.add_argument("--impl", choices=("solutions", "lessons"), default="solutions",
                   help="run the reference solutions (default) or your lesson files")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the run (default 0)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 when missing")


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(args: argparse.Namespace, profile: Profile, data, device) -> dict:
    import numpy
    import torch

    return {
        "command": " ".join(["alexnet-course", *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "alexnet_course": __version__,
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "numpy": numpy.__version__},
        "device": str(device),
        "hardware": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
        "precision": "bf16 autocast" if profile.bf16 else "fp32",
        "data_source": "synthetic (alexnet-course data synth)" if profile.synthetic
        else str(data.source),
        "data_sha256": data.checksum,
        "seed": args.seed,
        "profile": asdict(profile),
    }


def _load_data(args: argparse.Namespace, profile: Profile):
    from alexnet_course.data import load_cifar10, write_synthetic_cifar10

    if profile.synthetic:
        root = args.out / "synthetic-data"
        if not (root / "cifar-10-batches-py").is_dir():
            write_synthetic_cifar10(root, n_train=600, n_test=200, seed=args.seed)
        return load_cifar10(root, val_size=profile.val_size, seed=args.seed)
    return load_cifar10(args.data_dir, val_size=profile.val_size, seed=args.seed,
                        download=args.download)  # fmt: skip


def run_torch_scratch(args, profile: Profile, data, device) -> dict:
    import torch

    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD
    from alexnet_course.data.torch_pipeline import TorchBatches
    from alexnet_course.grading.learner import load_lesson_module

    alexnet = load_lesson_module("03_torch_scratch", "alexnet", args.impl)
    train = load_lesson_module("03_torch_scratch", "train", args.impl)
    kw = dict(batch_size=profile.batch_size, mean=CIFAR10_MEAN, std=CIFAR10_STD,
              size=profile.input_size, seed=args.seed, device=device)  # fmt: skip
    tr = TorchBatches(data.train, train=True, **kw)
    va = TorchBatches(data.val, **kw)
    te = TorchBatches(data.test, **kw)
    model = alexnet.AlexNet(num_classes=data.num_classes, norm=profile.norm).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=profile.lr,
                                                total_steps=profile.epochs * len(tr))  # fmt: skip

    class StepPerBatch:  # OneCycle steps every batch; fit() steps its scheduler per epoch
        def __init__(self, loader):
            self.loader = loader

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                yield batch
                sched.step()

    def on_epoch_end(epoch, h):
        print(f"  epoch {epoch + 1}/{profile.epochs}: train loss {h.train_loss[-1]:.3f} "
              f"acc {h.train_accuracy[-1]:.3f} | val loss {h.val_loss[-1]:.3f} "
              f"acc {h.val_accuracy[-1]:.3f}", flush=True)  # fmt: skip

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=profile.bf16)
    t0 = time.perf_counter()
    with autocast:
        history = train.fit(model, StepPerBatch(tr), va, epochs=profile.epochs, optimizer=opt,
                            num_classes=data.num_classes, on_epoch_end=on_epoch_end)
    seconds = time.perf_counter() - t0
    with autocast:
        result = train.evaluate(model, te, data.num_classes)
    return {
        "arm": "torch-scratch",
        "status": "ok",
        "test_accuracy": result.accuracy,
        "test_loss": result.loss,
        "per_class_accuracy": [float(v) for v in result.per_class_accuracy],
        "confusion_matrix": result.confusion_matrix.tolist(),
        "history": asdict(history),
        "train_seconds": seconds,
        "images_per_second": profile.epochs * len(data.train) / seconds,
        "parameters": alexnet.count_parameters(model),
        "trainable_parameters": alexnet.count_parameters(model, trainable_only=True),
    }


def run_compare(args: argparse.Namespace) -> int:
    from alexnet_course.device import pick_device, seed_everything

    import torch

    name = args.profile or ("gpu" if torch.cuda.is_available() else "cpu")
    profile = PROFILES[name]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise CourseError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    device = pick_device()
    if name == "gpu" and device.type != "cuda":
        raise CourseError("--profile gpu needs a CUDA GPU; none was found (use --profile cpu)")
    args.out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    data = _load_data(args, profile)
    prov = provenance(args, profile, data, device)
    print(f"alexnet-course compare: profile {name}, device {device}, data {prov['data_source']}"
          f" ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test)")
    results = []
    for arm in arms:
        if arm not in IMPLEMENTED:
            res = {"arm": arm, "status": "skipped",
                   "reason": "this arm is not implemented yet in the runner"}  # fmt: skip
        else:
            print(f"[{arm}]")
            seed_everything(args.seed)
            res = run_torch_scratch(args, profile, data, device)
        res["provenance"] = prov
        (args.out / arm).mkdir(exist_ok=True)
        (args.out / arm / "results.json").write_text(json.dumps(res, indent=2))
        results.append(res)
    lines = [f"# Comparison ({name} profile)", "", "| arm | status | test accuracy | train time |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        acc = f"{100 * r['test_accuracy']:.2f}%" if r["status"] == "ok" else "-"
        t = f"{r['train_seconds']:.0f} s" if r["status"] == "ok" else r.get("reason", "")
        lines.append(f"| {r['arm']} | {r['status']} | {acc} | {t} |")
    lines += ["", f"Command: `{prov['command']}`; hardware: {prov['hardware']}; data: "
              f"{prov['data_source']}; commit {prov['git_commit'][:10]}."]  # fmt: skip
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
