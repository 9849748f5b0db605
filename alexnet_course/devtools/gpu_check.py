"""``alexnet-course gpu-check DATA``: what a lent GPU machine checks, in one command.

Meant for a machine with CUDA, torch and torchvision but no TensorFlow, no network and no
install step, run from the checkout as ``PYTHONPATH=. python -m alexnet_course gpu-check
cifar10-jpeg.tar.gz``. ``DATA`` is the CIFAR-10 JPEG archive (``train/<class>/NNNN.jpg``,
``test/<class>/NNNN.jpg``; converted once into the official layout in a work folder) or a
data root that already holds ``cifar-10-batches-py/``.

Each step runs in its own process with its own time limit, so one failure does not stop the
others; the whole run fits a time budget (8 minutes by default; 107 s on one H200):

1. ``pytest``: the ``gpu``-marked graded tests of lessons 02 and 03 against the reference
   solutions;
2. ``bench``: ``alexnet-course bench`` at the gpu profile's batch and size, with
   ``--compile`` (if that fails, ``bench`` without it runs at the end);
3. ``compare``: one epoch of each torch arm of the ``gpu`` profile (``torch-pretrained`` is
   skipped with its reason where no ImageNet weights are cached);
4. ``probe``: a few training steps of lesson 03's AlexNet at the profile's batch and size, for
   the peak GPU memory (``torch.cuda.max_memory_allocated``).

It reports images/s, the achieved TFLOP/s (training FLOPs per image counted with forward
hooks on the convolutions and linear layers, x3 for forward + backward) against the device's
dense bf16 peak where the device is in :data:`PEAK_BF16_TFLOPS`, the peak GPU memory and what
``torch.compile`` gave, and writes ``gpu-check.json``, ``gpu-check.txt`` (the summary),
``gpu-check.log`` (every step's output) and ``compare-report.md`` into ``--out`` (default
``$OUT``, else ``runs/gpu-check``). Exit status: 0 when every step passed or was skipped with
a reason, 1 when one failed, 2 for an error the user can fix (bad DATA, no CUDA).

``--dry`` (or ``GPU_CHECK_DRY=1``) runs the same steps on the CPU at tiny sizes, to show on a
machine without a GPU that the check would run: the GPU tests are then skipped (expected),
``bench`` runs without ``--compile``, and ``compare`` uses a ``dry`` profile (the gpu profile
at 67 px, batch 16, no settings measurement, no checkpoints) because ``--profile gpu`` refuses
without CUDA. Without DATA it generates a tiny JPEG archive, so the converter runs too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.devtools.gpu_report import (
    TORCH_ARMS,
    _compile,
    _finish_compare,
    _finish_pytest,
    _peak_memory,
    _public,
    _read_json,
    _throughput,
    summary,
)

DATA_LABEL = "CIFAR-10 (JPEG copy)"
DRY_ENV = "GPU_CHECK_DRY"
OUT_ENV = "OUT"
DEFAULT_OUT = Path("runs/gpu-check")
TAIL_CHARS = 3000

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the vendors' data sheets,
# matched against torch.cuda.get_device_name(); the first match wins.
PEAK_BF16_TFLOPS = (
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"H100", "H100 SXM", 989.0),
    (r"H200", "H200", 989.0),
    (r"A100", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"RTX 4090", "RTX 4090", 165.0),
)



@dataclass(frozen=True)
class Mode:
    """The sizes one mode runs at."""

    name: str  # gpu | dry
    budget_seconds: float
    size: int
    batch: int
    bench_steps: int
    bench_rounds: int
    bench_compile: bool
    compare_profile: str
    probe_steps: int
    timeouts: dict = field(default_factory=dict)  # step -> seconds
    min_seconds: float = 30.0  # a step is not started with less time than this left


GPU = Mode("gpu", 480, 227, 128, 20, 2, True, "gpu", 10,
           {"pytest": 150, "bench": 150, "compare": 240, "probe": 60, "bench-no-compile": 90})
DRY = Mode("dry", 240, 67, 4, 1, 1, False, "gpu-dry", 1,
           {"pytest": 90, "bench": 90, "compare": 120, "probe": 60, "bench-no-compile": 60},
           min_seconds=10)  # fmt: skip


def peak_bf16_tflops(device_name: str) -> tuple[str, float] | None:
    """``(table name, dense bf16 TFLOP/s)`` for a CUDA device name, ``None`` when unknown."""
    for pattern, name, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name or ""):
            return name, tflops
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", type=Path, default=None, metavar="DATA",
                   help="the CIFAR-10 JPEG archive (cifar10-jpeg.tar.gz), or a data root holding "
                        "cifar-10-batches-py/; optional with --dry (a tiny archive is generated)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"where the JSON, summary and log go (default: ${OUT_ENV}, else {DEFAULT_OUT})")
    p.add_argument("--dry", action="store_true",
                   help=f"the same steps on the CPU at tiny sizes (also: {DRY_ENV}=1)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the converted data and the steps' outputs here (default: a "
                        "temporary folder, removed at the end)")
    p.add_argument("--budget-seconds", type=float, default=None,
                   help=f"time for the whole check (default {GPU.budget_seconds:g}; dry "
                        f"{DRY.budget_seconds:g})")  # fmt: skip


# ---------------------------------------------------------------- helpers
def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clean_tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The end of a process's output, progress bars reduced to their last state."""
    lines = [line.rsplit("\r", 1)[-1] if line.rstrip("\r") else "" for line in text.split("\n")]
    lines = [line.rstrip("\r") for line in lines]
    out = "\n".join(lines).strip("\n")
    return out if len(out) <= limit else "..." + out[-limit:]


def train_flops_per_image(model, size: int) -> float:
    """Training FLOPs per image: the multiply-adds of the convolutions and linear layers in
    one forward pass (counted with forward hooks), x2 for FLOPs, x3 for forward + backward."""
    import torch
    from torch import nn

    macs, hooks = [0], []

    def count(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            macs[0] += out.numel() // out.shape[0] * k
        elif isinstance(m, nn.Linear):
            macs[0] += out.numel() // out.shape[0] * m.in_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(count))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return 3.0 * 2.0 * macs[0]


def model_flops(size: int, impl: str) -> dict[str, float]:
    """Training FLOPs per image of lesson 03's AlexNet and of torchvision's, at ``size``."""
    import torch
    import torchvision

    from alexnet_course.course import load_lesson_module

    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        ours = alexnet.AlexNet(num_classes=10, norm="batch")
        tv = torchvision.models.alexnet(num_classes=10)
    return {"lesson03": train_flops_per_image(ours, size), "torchvision": train_flops_per_image(tv, size)}


# ---------------------------------------------------------------- steps
@dataclass
class Runner:
    root: Path
    out: Path
    env: dict
    deadline: float
    mode: Mode
    log: Path
    steps: list = field(default_factory=list)

    def later_reserve(self, later: int) -> float:
        return later * self.mode.min_seconds

    def run(self, name: str, argv: list[str], later: int = 0, what: str = "") -> dict:
        """Run one step in its own process group with its time limit; record its result."""
        left = self.deadline - time.monotonic() - self.later_reserve(later)
        timeout = min(self.mode.timeouts[name], left)
        rec = {"name": name, "what": what, "command": _public(shlex.join(argv), self.root),
               "timeout_seconds": round(max(timeout, 0), 1)}  # fmt: skip
        if timeout < self.mode.min_seconds:
            rec.update(status="skipped", seconds=0.0,
                       reason=f"out of time: {max(left, 0):.0f} s left of the budget")
            print(f"[{name}] skipped: {rec['reason']}", flush=True)
            self.steps.append(rec)
            return rec
        print(f"[{name}] {what} (limit {timeout:.0f} s) ...", flush=True)
        with open(self.log, "a") as log:
            log.write(f"\n===== {name}: {rec['command']}\n")
            log.flush()
            start = log.tell()
        t0 = time.perf_counter()
        cpu0 = _children_cpu()
        with open(self.log, "a") as log:
            proc = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip
            try:
                rc = proc.wait(timeout=timeout)
                rec["status"] = "ok" if rc == 0 else "failed"
                if rc != 0:
                    rec["reason"] = f"exit status {rc}"
            except subprocess.TimeoutExpired:
                rc = None
                rec.update(status="timeout", reason=f"ran past its limit of {timeout:.0f} s")
            finally:  # also on KeyboardInterrupt
                _kill_group(proc)  # the step's DataLoader workers and compile workers too
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        rec["cpu_seconds"] = round(_children_cpu() - cpu0, 1)
        rec["returncode"] = rc
        with open(self.log, "rb") as log:
            log.seek(start)
            rec["output_tail"] = _public(clean_tail(log.read().decode("utf-8", "replace")),
                                         self.root)  # fmt: skip
        last = next((ln.strip() for ln in reversed(rec["output_tail"].splitlines()) if ln.strip()), "")
        if rec["status"] != "ok" and last:
            rec["reason"] += f"; last output line: {last[:300]}"
        self.steps.append(rec)
        return rec


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _kill_group(proc: subprocess.Popen) -> None:
    """End the step's process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# ---------------------------------------------------------------- the command
def _out_dir(args) -> Path:
    if args.out is not None:
        return args.out
    return Path(os.environ[OUT_ENV]) if os.environ.get(OUT_ENV) else DEFAULT_OUT


def _resolve_data(data: Path | None, dry: bool) -> Path | None:
    """Fail early, in one line, when DATA cannot be what it should be."""
    from alexnet_course.data.cifar10 import FOLDER, DataError, batch_folder

    if data is None:
        if dry:
            return None
        raise DataError("gpu-check needs DATA: the CIFAR-10 JPEG archive (cifar10-jpeg.tar.gz) "
                        "or a data root holding cifar-10-batches-py/")  # fmt: skip
    if data.is_dir():
        if not batch_folder(data).is_dir():
            raise DataError(f"{data}: a folder without {FOLDER}/; give the JPEG archive "
                            f"(cifar10-jpeg.tar.gz) or a data root that holds {FOLDER}/")
        return data
    if not data.is_file():
        raise DataError(f"{data}: no such file (expected the CIFAR-10 JPEG archive "
                        "cifar10-jpeg.tar.gz, or a data root holding cifar-10-batches-py/)")
    return data


def run_gpu_check(args: argparse.Namespace) -> int:
    from alexnet_course.course import course_root

    dry = bool(args.dry) or os.environ.get(DRY_ENV, "") not in ("", "0")
    mode = DRY if dry else GPU
    t_start = time.monotonic()
    deadline = t_start + (args.budget_seconds or mode.budget_seconds)
    data = _resolve_data(args.data, dry)
    import torch

    cuda = torch.cuda.is_available() and not dry
    if not dry and not cuda:
        raise CourseError(f"gpu-check needs a CUDA GPU and none was found (--dry, or {DRY_ENV}=1, "
                          "runs the same steps on the CPU at tiny sizes)")  # fmt: skip
    root = course_root()
    impl = "solutions" if (root / "solutions").is_dir() else "lessons"
    out = _out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    work_tmp = None
    if args.work_dir is None:
        work = Path(work_tmp := tempfile.mkdtemp(prefix="gpu-check-"))
    else:
        work = args.work_dir
        work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, mode, dry, cuda, data, root, impl, out, work.resolve(), deadline, t_start)
    finally:
        if work_tmp is not None:
            shutil.rmtree(work_tmp, ignore_errors=True)


def _prepare_data(data: Path | None, work: Path, dry: bool) -> tuple[Path, dict]:
    from alexnet_course.data.jpeg_archive import convert_jpeg_archive, write_jpeg_archive

    info: dict = {}
    if data is not None and data.is_dir():
        from alexnet_course.provenance import public_path

        info.update(kind="data root", path=public_path(data))
        return data.resolve(), info
    if data is None:  # dry mode without DATA: a tiny generated archive exercises the converter
        data = write_jpeg_archive(work / "tiny-cifar10-jpeg.tar.gz", n_train=50, n_test=20)
        info["generated"] = "a tiny synthetic archive in the JPEG copy's layout (dry mode)"
    root = work / "data"
    done = convert_jpeg_archive(data, root)
    info.update(kind="JPEG archive", archive=data.name, archive_sha256=_sha256(data),
                train=done.n_train, test=done.n_test, convert_seconds=round(done.seconds, 1),
                train_mean_rgb=[round(v, 4) for v in done.train_mean])  # fmt: skip
    return root, info


def _run(args, mode: Mode, dry: bool, cuda: bool, data, root: Path, impl: str, out: Path,
         work: Path, deadline: float, t_start: float) -> int:  # fmt: skip
    import torch

    from alexnet_course.provenance import common_record

    py = sys.executable
    log = out / "gpu-check.log"
    log.write_text("")
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_bf16_tflops(device_name) if cuda else None
    report: dict = {
        "kind": "alexnet-course gpu-check",
        "mode": mode.name,
        "ok": None,
        "provenance": {
            **common_record(torch.device("cuda" if cuda else "cpu"), root=root),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "cuda": torch.version.cuda,
            "device": "cuda" if cuda else "cpu",
            "device_name": device_name,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
            "data_source": DATA_LABEL if not dry else f"{DATA_LABEL} layout, dry mode",
            "impl": impl,
        },
        "sizes": {"input_size": mode.size, "batch_size": mode.batch, "budget_seconds":
                  round(deadline - t_start), "compare_profile": mode.compare_profile},
        "peak_bf16_tflops": peak[1] if peak else None,
        "peak_bf16_source": (f"{peak[0]} dense bf16 (data sheet)" if peak else
                             "unknown device: TFLOP/s without a ratio" if cuda else "CPU: no ratio"),
    }  # fmt: skip
    json_path = out / "gpu-check.json"

    def save() -> None:
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(_public(json.dumps(report, indent=2, default=str), root))
        tmp.replace(json_path)

    print(f"gpu-check ({mode.name} mode): {device_name}, torch {torch.__version__}; "
          f"budget {deadline - t_start:.0f} s; writing {out}", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    data_root, info = _prepare_data(data, work, dry)  # DataError: one line, exit 2
    if dry:
        report["provenance"]["data_source"] = (
            "generated JPEG archive (dry mode)" if info.get("generated") else
            f"{DATA_LABEL} layout (dry mode)")  # fmt: skip
    info["seconds"] = round(time.perf_counter() - t0, 1)
    report["data"] = info
    print(f"[data] {info.get('kind')}: {info.get('train', '?')} train / {info.get('test', '?')} "
          f"test images ready in {info['seconds']:.1f} s", flush=True)  # fmt: skip
    try:
        report["flops_per_image"] = {"size": mode.size, **model_flops(mode.size, impl)}
    except Exception as e:  # TFLOP/s is then left out; the steps still run
        report["flops_per_image"] = {"size": mode.size, "error": f"{type(e).__name__}: {e}"}
    save()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env.pop(OUT_ENV, None)
    if dry:  # the CPU, even on a machine with a GPU
        env.update(CUDA_VISIBLE_DEVICES="", ALEXNET_COURSE_DEVICE="cpu")
    runner = Runner(root, out, env, deadline, mode, log)
    report["steps"] = runner.steps
    d = str(data_root)

    # 1. the gpu-marked graded tests of lessons 02 and 03, against the solutions
    outcomes, bench_json = work / "pytest-outcomes.json", work / "pytest-benchmark.json"
    argv = [py, "-m", "pytest", "lessons/02_torch_pretrained", "lessons/03_torch_scratch",
            "--solutions", "-m", "gpu", "-q",
            # the plugin by module, whether or not the package's pytest11 entry point exists
            "-p", "no:alexnet_course", "-p", "alexnet_course.grading.plugin",
            "--outcomes-json", str(outcomes),
            "--results-json", str(work / "pytest-results.json")]  # fmt: skip
    import importlib.util

    if importlib.util.find_spec("pytest_benchmark") is not None:
        argv += ["--benchmark-json", str(bench_json)]
    rec = runner.run("pytest", argv, later=3, what="gpu-marked graded tests of lessons 02, 03 "
                     "(--solutions)")  # fmt: skip
    _finish_pytest(rec, outcomes, bench_json, cuda, root)
    _done(rec)
    save()

    # 2. bench, with torch.compile
    def bench(name: str, compile_: bool, later: int) -> dict:
        path = work / f"{name}.json"
        argv = [py, "-m", "alexnet_course", "bench", "--data-dir", d, "--no-download",
                "--size", str(mode.size), "--batch-size", str(mode.batch),
                "--steps", str(mode.bench_steps), "--rounds", str(mode.bench_rounds),
                "--out", str(path)] + (["--compile"] if compile_ else [])  # fmt: skip
        rec = runner.run(name, argv, later=later, what="input pipelines and settings, images/s"
                         + (" (+torch.compile)" if compile_ else ""))  # fmt: skip
        res = _read_json(path)
        if res is not None:
            rec["result"] = res
        elif rec["status"] == "ok":
            rec.update(status="failed", reason="bench wrote no JSON")
        if not compile_ and mode.name == "dry":
            rec["note"] = "torch.compile not measured in dry mode (compiling on a CPU takes minutes)"
        _done(rec)
        save()
        return rec

    b = bench("bench", mode.bench_compile, later=2)

    # 3. one epoch of each torch arm
    cmp_out = work / "compare"
    cargs = ["--profile", mode.compare_profile, "--epochs", "1", "--arms", ",".join(TORCH_ARMS),
             "--data-dir", d, "--no-download", "--data-label",
             DATA_LABEL if not dry else "generated JPEG archive (gpu-check --dry)",
             "--out", str(cmp_out)]  # fmt: skip
    argv = [py, "-m", "alexnet_course", "compare", *cargs]
    rec = runner.run("compare", argv, later=1, what=f"one epoch of each torch arm, profile "
                     f"{mode.compare_profile}")  # fmt: skip
    _finish_compare(rec, cmp_out)
    if dry:
        rec["profile_note"] = ("--profile gpu needs CUDA: dry mode ran the gpu-dry profile (the "
                               "gpu profile shrunk to 67 px, batch 16) on the converted data")
    if (cmp_out / "report.md").is_file():
        (out / "compare-report.md").write_text(_public((cmp_out / "report.md").read_text(), root))
    _done(rec)
    save()

    # 4. peak memory: lesson 03's model at the profile's batch and size, with compare's settings
    settings = next((a.get("settings") for a in rec.get("arms", []) if a.get("settings")), None)
    bf16 = settings["autocast"] == "bf16" if settings else cuda
    cl = settings["channels_last"] if settings else cuda
    probe_path = work / "probe.json"
    argv = [py, "-m", "alexnet_course.devtools.gpu_probe", "probe", "--batch", str(mode.batch),
            "--size", str(mode.size), "--steps", str(mode.probe_steps), "--impl", impl,
            "--out", str(probe_path)]  # fmt: skip
    argv += (["--bf16"] if bf16 else []) + (["--channels-last"] if cl else [])
    rec = runner.run("probe", argv, later=1 if b["status"] not in ("ok", "skipped") else 0,
                     what="peak memory of training steps, lesson 03's AlexNet")
    res = _read_json(probe_path)
    if res is not None:
        rec["result"] = res
    elif rec["status"] == "ok":
        rec.update(status="failed", reason="the probe wrote no JSON")
    _done(rec)
    save()

    if mode.bench_compile and b["status"] not in ("ok", "skipped"):
        bench("bench-no-compile", False, later=0)

    report["throughput"] = _throughput(report)
    report["peak_memory"] = _peak_memory(report)
    report["compile"] = _compile(report)
    report["total_seconds"] = round(time.monotonic() - t_start, 1)
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in runner.steps)
    save()
    text = summary(report)
    (out / "gpu-check.txt").write_text(_public(text, root) + "\n")
    print(text, flush=True)
    return 0 if report["ok"] else 1


def _done(rec: dict) -> None:
    extra = rec.get("reason") or rec.get("note") or ""
    print(f"[{rec['name']}] {rec['status']} in {rec.get('seconds', 0):.1f} s"
          + (f": {extra}" if extra else ""), flush=True)
