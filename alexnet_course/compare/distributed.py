"""The torch arms on several processes: ``torchrun`` and PyTorch's DistributedDataParallel.

``torchrun --nproc-per-node N -m alexnet_course compare ...`` (or ``alexnet-course compare
--nproc N``, which launches exactly that) starts N processes. Each one:

* joins the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``...): NCCL on GPUs, gloo on CPUs;
* reads its own shard of every global batch (:class:`~alexnet_course.data.torch_pipeline.
  TorchBatches` with ``rank`` and ``world_size``): the profile's batch size stays the global
  batch, the per-epoch shuffle and augmentation draws are the single-process ones;
* trains the model wrapped in ``DistributedDataParallel``, BatchNorm made synchronous:
  torch's ``SyncBatchNorm`` on GPUs, :class:`GlooSyncBatchNorm` on CPUs (torch's runs on
  GPUs only), so the statistics are those of the global batch;
* sums losses, accuracies and confusion matrices across the ranks (:func:`combine`).

Only rank 0 prints, writes results, figures and checkpoints. With the same global batch,
no dropout and no augmentation, N processes and one process reach the same weights
(``tests/test_distributed.py`` checks it to 1e-4 on 2 gloo processes and 2 "nodes").
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from alexnet_course import CourseError


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world_size > 1

    def record(self, batch_size: int) -> dict:
        """What results.json says about the processes that trained an arm."""
        return {"world_size": self.world_size, "backend": self.backend or "none",
                "global_batch": batch_size,
                "batch_per_rank": -(-batch_size // self.world_size)}  # fmt: skip


def under_torchrun() -> bool:
    """Whether this process is one of several that torchrun started (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_type: str) -> Dist:
    """Join torchrun's process group when there is one; on CUDA each rank takes the GPU of
    its ``LOCAL_RANK``."""
    if not under_torchrun():
        return Dist()
    import torch
    import torch.distributed as dist

    backend = "nccl" if device_type == "cuda" else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local, backend)


def teardown(d: Dist, *, finished: bool = True) -> None:
    """Leave the process group. ``finished``: this rank got to the end without an error, so
    it first waits for the others. A rank that destroyed its gloo group while another still
    wrote its results died of SIGABRT ("terminate called without an active exception") in
    about one test run in four on a busy 2-core machine. After an error, no waiting: the
    other ranks may never arrive."""
    if d.on:
        import torch.distributed as dist

        if dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.on:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first(d: Dist):
    """Rank 0 runs the block first (writes generated data, downloads), then the others."""
    if d.on and not d.main:
        barrier(d)
    yield
    if d.on and d.main:
        barrier(d)


def broadcast(d: Dist, obj):
    """Rank 0's ``obj`` on every rank (measured settings and plans differ per process)."""
    if not d.on:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(d: Dist, values, device=None) -> np.ndarray:
    """The element-wise sum of ``values`` over every rank, as float64."""
    arr = np.asarray(values, dtype=np.float64)
    if not d.on:
        return arr
    import torch
    import torch.distributed as dist

    t = torch.from_numpy(arr.copy()).to(device or "cpu")
    dist.all_reduce(t)
    return t.cpu().numpy()


def combine_epoch(d: Dist, loss: float, accuracy: float, seen: int) -> tuple[float, float]:
    """One epoch's training loss and accuracy over every rank (each rank's are over its
    ``seen`` samples)."""
    if not d.on:
        return loss, accuracy
    s = all_sum(d, [loss * seen, accuracy * seen, seen])
    return float(s[0] / s[2]), float(s[1] / s[2])


def combine(d: Dist, ev, seen: int):
    """An evaluation over every rank's shard: confusion matrices and losses summed, the
    accuracies computed from the sum. Returns an object with the evaluation's fields."""
    if not d.on:
        return ev
    cm = np.asarray(ev.confusion_matrix, dtype=np.float64)
    k = cm.shape[0]
    s = all_sum(d, np.concatenate([cm.ravel(), [ev.loss * seen, seen]]))
    cm = np.rint(s[: k * k]).astype(np.int64).reshape(k, k)
    n = s[-1]
    rows = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(rows > 0, np.diag(cm) / rows, np.nan)
    return SimpleNamespace(loss=float(s[-2] / max(n, 1)), accuracy=float(np.trace(cm) / max(n, 1)),
                           per_class_accuracy=per_class, confusion_matrix=cm)  # fmt: skip


def _gloo_sync_bn_class():
    import torch
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn
    from torch import nn

    # the differentiable all-reduce is marked deprecated in favour of a private module; it is
    # the public one that carries gradients, so it stays, without the warning on every step
    warnings.filterwarnings("ignore", message=".*all_reduce is deprecated", category=FutureWarning)

    class GlooSyncBatchNorm(nn.BatchNorm2d):
        """BatchNorm2d whose training statistics are those of the global batch, summed over
        the process group with differentiable all-reduces; works on CPUs (gloo), where
        torch's ``SyncBatchNorm`` refuses to run. In eval mode it is plain BatchNorm2d."""

        def forward(self, x):
            if not (self.training and dist.is_available() and dist.is_initialized()):
                return super().forward(x)
            c = x.shape[1]
            n_local = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
            head = dnn.all_reduce(torch.cat([x.sum((0, 2, 3)), n_local]))
            n = head[-1]
            mean = head[:c] / n
            centred = x - mean.view(1, c, 1, 1)
            var = dnn.all_reduce((centred * centred).sum((0, 2, 3))) / n
            if self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    m = self.momentum if self.momentum is not None else (
                        1.0 / float(self.num_batches_tracked))  # fmt: skip
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    unbiased = var.detach() * n / max(float(n) - 1, 1.0)
                    self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
            y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
            if self.affine:
                y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
            return y

    return GlooSyncBatchNorm


def sync_batchnorm(model, device_type: str):
    """``model`` with every BatchNorm made synchronous across the process group."""
    import torch
    from torch import nn

    if device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    cls = _gloo_sync_bn_class()

    def convert(module):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                new = cls(child.num_features, child.eps, child.momentum, child.affine,
                          child.track_running_stats)  # fmt: skip
                with torch.no_grad():
                    new.load_state_dict(child.state_dict())
                new.to(next(child.buffers(), torch.empty(0)).device)
                setattr(module, name, new)
            else:
                convert(child)
        return module

    return convert(model)


def wrap(d: Dist, model, device):
    """``model`` in DistributedDataParallel (parameters broadcast from rank 0)."""
    if not d.on:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else d.local_rank] \
        if device.type == "cuda" else None  # fmt: skip
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def quiet_unless_main(d: Dist):
    """Ranks other than 0 print nothing: one progress bar, one report."""
    if d.main:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def launch(nproc: int, argv: list[str]) -> int:
    """``alexnet-course compare --nproc N ...``: run the same command under ``torchrun
    --standalone --nproc-per-node N`` (one machine; see the Scale-out page for nodes)."""
    if nproc < 1:
        raise CourseError(f"--nproc must be at least 1, got {nproc}")
    rest, skip = [], False
    for a in argv:  # the command again, without --nproc
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "alexnet_course", *rest]  # fmt: skip
    print(f"launching: {shlex.join(['torchrun', *cmd[3:]])}", flush=True)
    return subprocess.run(cmd).returncode
