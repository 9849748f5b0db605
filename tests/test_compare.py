"""``alexnet-course compare`` and ``bench`` on generated data (no network, no ../shared)."""

from __future__ import annotations

import json
import statistics
import sys

import numpy as np
import pytest
import torchvision  # noqa: F401  (torch's libraries before TensorFlow's)

from alexnet_course.cli import main

FILE = "alexnet-owt-7be5be79.pth"

# A test that runs a comparison in-process runs in a process of its own (tests/conftest.py):
# the run's models, TensorFlow and glibc's kept heap would leave the worker over 2.5 GB (#30)
own_process = pytest.mark.own_process


@pytest.fixture
def narrow_keras(monkeypatch):
    """The Keras arms train lesson 04's model narrowed (tests/narrow.py), for the budget
    tests: with torch arms before them in one process, the full-width model took those to
    2.7 GB (#30), and neither a plan nor a re-plan sees the model's width."""
    from alexnet_course.compare import keras_arm
    from tests.narrow import narrowed

    full = keras_arm.keras_model

    def keras_model(arm, ctx):
        model, mean, std = full(arm, ctx)
        return narrowed(model, ctx.code.keras_alexnet), mean, std

    monkeypatch.setattr(keras_arm, "keras_model", keras_model)


@pytest.mark.slow
def test_smoke_profile_runs_every_arm(smoke_run):
    out, printed = smoke_run
    for arm in ("torch-scratch", "torch-tv-scratch", "torch-pretrained", "keras-scratch",
                "keras-pretrained"):  # fmt: skip
        res = json.loads((out / arm / "results.json").read_text())
        assert res["status"] == "ok", (arm, res.get("reason"), res.get("traceback"))
        assert 0.0 <= res["test_accuracy"] <= 1.0 and len(res["per_class_accuracy"]) == 10
        assert np.array(res["confusion_matrix"]).sum() == 200
        assert len(res["history"]["val_accuracy"]) == 2 and res["images_per_second"] > 0
        prov = res["provenance"]
        for key in ("command", "git_commit", "versions", "device", "precision", "data_source",
                    "data_sha256", "seed", "split"):
            assert prov[key] not in (None, ""), (arm, key)
        if arm.startswith("keras"):  # the smoke profile measures nothing: the step as written
            assert res["settings"]["jit_compile"] is False, res["settings"]
        else:
            assert sum(res["threads"]["steps_at"].values()) == 2 * 192 // 32
    scratch = json.loads((out / "torch-scratch" / "results.json").read_text())
    assert scratch["test_accuracy"] > 0.3  # generated data: 10 classes, chance is 0.1
    assert scratch["parameters"] == 58_322_314 + 2 * (96 + 256 + 384 + 384 + 256)
    report = (out / "report.md").read_text()
    assert "| torch-scratch | ok |" in report and "**Generated data.**" in report
    assert "seed notebook" not in report  # its real CIFAR-10 figures stay out of a synthetic run
    for fig in ("learning_curves.png", "per_class_accuracy.png", "confusion_matrices.png",
                "accuracy_vs_time.png", "samples.png"):
        assert (out / fig).stat().st_size > 1000, fig
    assert "epoch 2/2" in printed
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 50 * 2**20, f"the smoke run wrote {size / 2**20:.0f} MB"


@own_process
def test_pretrained_arms_are_skipped_without_weights(tmp_path, monkeypatch):
    import dataclasses

    from alexnet_course.compare import runner

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setitem(runner.PROFILES, "smoke",  # 64 training images: what ran is not the point
                        dataclasses.replace(runner.PROFILES["smoke"], train_limit=64))
    out = tmp_path / "run"
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", "torch-pretrained,torch-scratch", "--epochs", "1"]) == 0  # fmt: skip
    skipped = json.loads((out / "torch-pretrained" / "results.json").read_text())
    assert skipped["status"] == "skipped" and FILE in skipped["reason"]
    assert json.loads((out / "torch-scratch" / "results.json").read_text())["status"] == "ok"
    report = (out / "report.md").read_text()
    assert "| torch-pretrained | skipped (see below) |" in report
    assert f"- torch-pretrained skipped: {skipped['reason']}" in report
    # a later run of one arm into the same folder keeps the other arm in the report
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", "torch-tv-scratch", "--epochs", "1"]) == 0  # fmt: skip
    report = (out / "report.md").read_text()
    assert "| torch-scratch | ok |" in report and "| torch-tv-scratch | ok |" in report


@own_process
def test_interrupted_run_resumes_to_the_same_result(tmp_path, capsys, monkeypatch):
    import dataclasses

    from alexnet_course.compare import runner
    from alexnet_course.course import load_lesson_module

    # the smoke profile keeps no checkpoints (seconds to rerun); the cpu/gpu profiles do.
    # 64 training images: 2 batches an epoch are enough to interrupt and resume
    monkeypatch.setitem(runner.PROFILES, "smoke",
                        dataclasses.replace(runner.PROFILES["smoke"], checkpoints=True,
                                            train_limit=64))
    common = ["compare", "--profile", "smoke", "--arms", "torch-scratch", "--epochs", "2"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "torch-scratch" / "results.json").read_text())
    assert whole["provenance"]["split"]["train"] == 64  # the profile's train_limit

    train = load_lesson_module("03_torch_scratch", "train", "solutions")
    real_evaluate, calls = train.evaluate, []

    from alexnet_course.data.torch_pipeline import TorchBatches

    def interrupt_in_epoch_2(model, loader, *args, **kwargs):  # Ctrl-C in the second epoch
        if isinstance(loader, TorchBatches):  # not the preflight's tiny check
            calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(model, loader, *args, **kwargs)

    out = tmp_path / "cut"
    monkeypatch.setattr(train, "evaluate", interrupt_in_epoch_2)
    assert main([*common, "--out", str(out)]) == 130
    assert (out / "torch-scratch" / "checkpoint.pt").exists()
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    capsys.readouterr()
    assert main([*common, "--out", str(out), "--resume"]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    resumed = json.loads((out / "torch-scratch" / "results.json").read_text())
    assert resumed["history"]["val_accuracy"] == whole["history"]["val_accuracy"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert main([*common[:-1], "3", "--out", str(out), "--resume"]) == 2  # other epochs
    # a finished arm keeps no checkpoint (it serves no --resume), and --resume keeps it as is
    assert not list((out / "torch-scratch").glob("checkpoint*"))
    assert main([*common, "--out", str(out), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out


@own_process
def test_bench_prints_both_pipelines_and_the_ratio(tmp_path, capsys):
    import torch

    assert main(["data", "synth", str(tmp_path), "--n-train", "200", "--n-test", "20"]) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine: the one-thread-fewer variant is measured
    try:
        assert main(["bench", "--data-dir", str(tmp_path), "--steps", "2", "--batch-size", "4",
                     "--size", "67", "--rounds", "1", "--out",
                     str(tmp_path / "bench.json")]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "seed pipeline" in out and "reference pipeline" in out and "ratio:" in out
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["ratio"] > 0 and res["seed_images_per_s"] > 0
    # every variant's every timed step is recorded, and its rate is the median step's
    for name, secs in res["step_seconds"].items():
        assert len(secs) == 2
        assert res["images_per_s"][name] == pytest.approx(4 / statistics.median(secs), rel=1e-3)
    # what each variant ran with is recorded; the thread variant ran at one thread fewer
    ran = res["variants"]
    assert ran["seed"] == {"pipeline": False, "channels_last": False, "bf16": False,
                           "compile": False, "nnpack": [], "fused_sgd": False, "heap": False,
                           "threads": 2}  # fmt: skip
    assert ran["+channels_last"]["channels_last"] and ran["+channels_last"]["threads"] == 2
    assert ran["+threads=1"]["threads"] == 1 and "+threads=1" in out
    assert list(ran)[-1] == "+threads=1"  # the row above it, with one thread fewer
    # the row above it with one thread fewer; the layers NNPACK computes are measured again at
    # that thread count, so they may differ (a clean-clone run saw [] against ['features.1.0'])
    measured = ("threads", "nnpack")
    assert {k: v for k, v in ran["+threads=1"].items() if k not in measured} == \
        {k: v for k, v in ran[list(ran)[-2]].items() if k not in measured}
    assert isinstance(ran["+threads=1"]["nnpack"], list)
    # each setting's contribution, as its own ratio to the seed pipeline
    assert {"seed", "pipeline", "+channels_last"} <= set(res["ratio_to_seed"])
    assert res["reference"] in res["ratio_to_seed"] and "+channels_last" in out
    if sys.platform.startswith("linux"):  # glibc: the heap setting, measured in its own process
        assert "+heap" in res["ratio_to_seed"] and res["images_per_s"]["+heap"] > 0
        assert res["heap_setting"] and "+heap" in out
    from alexnet_course.compare import convs

    if convs.available():  # each layer NNPACK can compute, timed both ways; the faster used
        picked = res["nnpack_layers"]["+nnpack"]
        assert len(picked) == 4  # AlexNet's stride-1 convolutions: conv2 to conv5
        assert all(r["onednn_ms"] > 0 and r["nnpack_ms"] > 0 for r in picked.values())
        assert ran["+nnpack"]["nnpack"] == [k for k, r in picked.items() if r["nnpack"]]
        assert "+nnpack: NNPACK in" in out
    else:
        assert "+nnpack" not in ran and "+nnpack not measured" in out
    if "+fused_sgd" in ran:
        assert ran["+fused_sgd"]["fused_sgd"] and not ran["+heap"]["fused_sgd"]
    # a compiler that fails (here: a backend that does not exist) is reported, and the rest
    # is measured all the same
    assert main(["bench", "--data-dir", str(tmp_path), "--steps", "1", "--batch-size", "4",
                 "--size", "67", "--rounds", "1", "--no-bf16", "--compile", "--compile-backend",
                 "no-such-backend", "--out", str(tmp_path / "b2.json")]) == 0  # fmt: skip
    res2 = json.loads((tmp_path / "b2.json").read_text())
    assert "+bf16" not in res2["ratio_to_seed"] and "+compile" not in res2["ratio_to_seed"]
    assert "no-such-backend" in res2["compile_failed"] and "+compile not measured" in \
        capsys.readouterr().out
    assert not any(v["compile"] for v in res2["variants"].values())
    assert {"seed", "+channels_last"} <= set(res2["ratio_to_seed"])


def test_bf16_forward_sees_every_steps_weights():
    """The runner's bf16 autocast wraps each forward: one region around a whole epoch would
    reuse the first step's bf16 weights and the network would never learn."""
    import torch
    from torch import nn

    from alexnet_course.compare.models import autocast_forward

    torch.manual_seed(0)
    model = autocast_forward(nn.Sequential(nn.Linear(8, 4)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    losses = []
    for _ in range(5):
        out = model(x)
        assert out.dtype == torch.bfloat16
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    assert list(model.state_dict()) == ["0.weight", "0.bias"]


def test_every_arm_follows_the_same_learning_rate_curve():
    """torch (LambdaLR over lr_factor) and Keras (its schedule object) give the same rates."""
    pytest.importorskip("keras", reason="Keras is not installed")
    import torch

    from alexnet_course.compare.models import keras_schedule as _KerasSchedule
    from alexnet_course.compare.models import lr_factor

    total, peak = 40, 0.02
    keras_schedule = _KerasSchedule(peak, total, 0.3)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, 0.3))
    torch_rates = []
    for _ in range(total):
        torch_rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    keras_rates = [float(keras_schedule(s)) for s in range(total)]
    assert max(abs(a - b) for a, b in zip(torch_rates, keras_rates)) < 1e-7
    assert torch_rates[0] == pytest.approx(peak / 25) and max(torch_rates) == pytest.approx(peak)
    assert torch_rates[-1] < peak / 50  # decays to (nearly) zero


def _fake_times(table):
    """A stand-in for settings._step_seconds: fixed seconds per (bf16, channels_last)."""

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        return [table[(bf16, channels_last)]] * steps

    return measure


def test_no_bf16_support_means_fp32(monkeypatch):
    """A CPU without bf16 units: bf16 autocast is never even measured, the profile falls back
    to fp32 (it ran 54x slower than fp32 on such a CPU)."""
    import torch
    from torch import nn

    from alexnet_course.compare import settings

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert settings.bf16_supported(torch.device("cpu")) is False
    tried = []

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        tried.append(bf16)
        return [1.0] * steps

    got = settings.measure_settings(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"),
                                    batch_size=2, size=8, measure=measure)  # fmt: skip
    assert got["autocast"] is None and got["bf16_supported"] is False
    assert True not in tried and "without bf16 support" in got["reason"]
    smoke = settings.fixed_settings(torch.device("cpu"), bf16=True, reason="x")
    assert smoke["autocast"] is None


def test_no_bf16_flag_keeps_bf16_out_even_where_supported(monkeypatch):
    """``compare --no-bf16``: fp32 only, as on a CPU without bf16, on any machine."""
    import argparse

    import torch

    from alexnet_course.compare import runner, settings, timing
    from alexnet_course.compare.context import Options, RunContext
    from alexnet_course.compare.lesson_code import LessonCode

    seen = {}

    def measure_settings(make, device, *, batch_size, size, allow_bf16, **kw):
        seen["allow_bf16"] = allow_bf16
        return {"autocast": None, "channels_last": False, "step_seconds": {"fp32": 1.0},
                "reason": "stub"}  # fmt: skip

    monkeypatch.setattr(settings, "measure_settings", measure_settings)
    monkeypatch.setattr(settings, "measure_compile",
                        lambda make, device, chosen, **kw: {**chosen, "compile": None})
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    data = argparse.Namespace(num_classes=10)
    for flags, allowed in ((["--no-bf16"], False), ([], True)):
        options = Options.from_args(parser.parse_args(["--profile", "cpu", *flags]))
        ctx = RunContext(options, runner.PROFILES["cpu"], torch.device("cpu"), None,
                         LessonCode("solutions"), started=0.0, data=data)  # fmt: skip
        timing.torch_settings(ctx)
        assert seen["allow_bf16"] is allowed


@pytest.mark.parametrize("table, autocast, cl", [
    ({(False, False): 1.0, (False, True): 0.99, (True, False): 0.5, (True, True): 0.6}, "bf16", False),
    ({(False, False): 1.0, (False, True): 0.8, (True, False): 30.0, (True, True): 40.0}, None, True),
    ({(False, False): 1.0, (False, True): 0.97, (True, False): 0.98, (True, True): 0.99}, None, False),
])  # fmt: skip
def test_settings_follow_the_measurement(monkeypatch, table, autocast, cl):
    """With bf16 units, bf16 is used only when it measures faster; a setting must gain 5%."""
    import torch
    from torch import nn

    from alexnet_course.compare import settings

    monkeypatch.setattr(settings, "bf16_supported", lambda device: True)
    got = settings.measure_settings(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"),
                                    batch_size=2, size=8, measure=_fake_times(table),
                                    pick_convs=lambda model, x: {})  # fmt: skip
    assert (got["autocast"], got["channels_last"]) == (autocast, cl)
    assert set(got["step_seconds"]) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}


def _compiled_faster(compiled: float):
    """A stand-in for settings._step_seconds: 1 s per eager step, ``compiled`` s per step of a
    torch.compile'd model."""
    import torch

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        is_compiled = isinstance(model, torch._dynamo.eval_frame.OptimizedModule)
        return [compiled if is_compiled else 1.0] * steps

    return measure


@pytest.mark.parametrize("compiled, limit, used", [(0.5, 120.0, True), (0.97, 120.0, False),
                                                   (0.5, -1.0, False)])  # fmt: skip
def test_compile_is_used_only_where_it_measures_faster(monkeypatch, compiled, limit, used):
    """torch.compile on top of the eager pick: used when its step gains 5% and it compiled
    within the limit; the measured step and the compile time are recorded either way."""
    import torch
    from torch import nn

    from alexnet_course.compare import settings

    monkeypatch.setattr(settings, "COMPILE_LIMIT_S", limit)
    chosen = {"autocast": None, "channels_last": False, "step_seconds": {"fp32": 1.0},
              "reason": "fp32"}  # fmt: skip
    got = settings.measure_compile(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"), chosen,
                                   batch_size=2, size=8, measure=_compiled_faster(compiled),
                                   backend="eager")  # fmt: skip
    assert got["compile"] == ("eager" if used else None)
    assert got["step_seconds"]["fp32+compile"] == compiled and got["compile_seconds"] >= 0
    assert ("torch.compile used" in got["reason"]) == used
    assert settings.describe(got).endswith("torch.compile") == used


def test_a_compiler_that_fails_is_a_reason_not_an_error():
    """No C++ compiler, an op the compiler cannot take: eager training, and why."""
    import torch
    from torch import nn

    from alexnet_course.compare import settings

    def measure(model, x, y, *, bf16, channels_last, steps, **_):
        if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            raise RuntimeError("InvalidCxxCompiler: No working C compiler detected\nmore")
        return [1.0] * steps

    chosen = {"autocast": None, "channels_last": False, "step_seconds": {"fp32": 1.0},
              "reason": "fp32"}  # fmt: skip
    got = settings.measure_compile(lambda: nn.Conv2d(3, 4, 3), torch.device("cpu"), chosen,
                                   batch_size=2, size=8, measure=measure, backend="eager")  # fmt: skip
    assert got["compile"] is None and "fp32+compile" not in got["step_seconds"]
    assert "torch.compile not used: it failed here (RuntimeError: InvalidCxxCompiler" in got["reason"]


@own_process
def test_a_compiled_setting_trains_the_arm_compiled_and_says_so(tmp_path, monkeypatch):
    """Where torch.compile measures faster, the torch arm trains through torch.compile, the
    plan counts the compile time, and results.json records it (dynamo's "eager" backend
    here: the same tracing, without the minutes inductor takes on a CPU)."""
    import dataclasses
    import functools

    import torch

    from alexnet_course.compare import runner, settings

    monkeypatch.setitem(runner.PROFILES, "smoke",
                        dataclasses.replace(runner.PROFILES["smoke"], tune=True, try_compile=True,
                                            train_limit=64))  # fmt: skip
    monkeypatch.setattr(settings, "_step_seconds", _compiled_faster(0.5))
    monkeypatch.setattr(settings, "measure_compile",
                        functools.partial(settings.measure_compile, backend="eager"))
    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(kw) or real(m, **kw))
    out = tmp_path / "run"
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", "torch-scratch", "--epochs", "1", "--no-bf16"]) == 0  # fmt: skip
    res = json.loads((out / "torch-scratch" / "results.json").read_text())
    assert res["status"] == "ok", res.get("traceback")
    assert res["settings"]["compile"] == "eager" and res["settings"]["compile_seconds"] >= 0
    assert res["settings"]["chosen_step_seconds"] == res["settings"]["step_seconds"]["fp32+compile"] == 0.5
    assert "torch.compile" in res["provenance"]["precision"]
    assert compiled == [{"backend": "eager"}] * 2  # the measurement's model, then the arm's
    assert res["test_accuracy"] > 0.1  # it learnt through the compiled module
    assert res["plan"]["estimated_seconds"]["torch-scratch"] >= res["settings"]["compile_seconds"]
    # --no-compile: not even measured
    assert main(["compare", "--profile", "smoke", "--out", str(tmp_path / "off"), "--no-download",
                 "--arms", "torch-scratch", "--epochs", "1", "--no-bf16", "--no-compile"]) == 0  # fmt: skip
    off = json.loads((tmp_path / "off" / "torch-scratch" / "results.json").read_text())
    assert off["settings"]["compile"] is None and "--no-compile" in off["settings"]["reason"]
    assert len(compiled) == 2


def test_candidates_share_their_dense_weights_and_nothing_else():
    """The settings candidates share their Linear layers' parameters (one set for all), never
    a convolution's, and a layer whose shape differs keeps its own."""
    import torch
    from torch import nn

    from alexnet_course.compare.models import share_linear_weights

    def net(width):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, width), nn.Linear(width, 2))

    a, b, c = net(8), net(8), net(5)
    share_linear_weights(b, a)
    share_linear_weights(c, a)
    assert b[2].weight is a[2].weight and b[2].bias is a[2].bias and b[3].weight is a[3].weight
    assert b[0].weight is not a[0].weight and not torch.equal(b[0].weight, a[0].weight)
    assert c[2].weight is not a[2].weight and c[3].weight is not a[3].weight
    ids = {id(p) for m in (a, b) for p in m.parameters()}
    assert len(ids) == len(list(a.parameters())) + 2  # b adds only its convolution's two


def _nnpack_measures_faster(monkeypatch) -> tuple[list, list, list]:
    """NNPACK's convolutions and the fused SGD measured faster (a fake measurement): the
    smoke profile tuned, and what the arm then used (NNPACK layer lists, fused optimizers),
    with the compare command's common arguments."""
    import dataclasses

    from alexnet_course.compare import convs, runner, settings

    if not convs.available():
        pytest.skip("NNPACK is not available here (it needs AVX2 and FMA)")
    monkeypatch.setitem(runner.PROFILES, "smoke",
                        dataclasses.replace(runner.PROFILES["smoke"], tune=True, train_limit=64))

    def pick(model, x):  # every layer NNPACK can compute measures faster, weight gradient too
        return {n: {"onednn_ms": 2.0, "nnpack_ms": 1.0, "nnpack_wgrad_ms": 0.5, "nnpack": True,
                    "wgrad": True} for n, m in model.named_modules() if convs.eligible(m)}  # fmt: skip

    def step(model, x, y, *, bf16, channels_last, steps, **_):
        uses = any(convs.uses_nnpack(m) for m in model.modules())
        return [0.5 if uses else 1.0] * steps

    monkeypatch.setattr(convs, "pick_layers", pick)
    monkeypatch.setattr(settings, "_step_seconds", step)
    used, fused = [], []
    real_use, real_fuse = convs.use_nnpack, settings.use_fused_sgd
    monkeypatch.setattr(convs, "use_nnpack", lambda m, names, wgrad=(): used.append(list(names))
                        or real_use(m, names, wgrad))  # fmt: skip
    monkeypatch.setattr(settings, "use_fused_sgd", lambda opt: fused.append(opt) or real_fuse(opt))
    common = ["compare", "--profile", "smoke", "--no-download", "--arms", "torch-scratch",
              "--epochs", "1", "--no-bf16", "--no-compile"]  # fmt: skip
    return used, fused, common


@own_process
def test_nnpack_and_fused_sgd_train_the_arm_where_measured_faster(tmp_path, monkeypatch):
    """Where NNPACK's convolutions and the fused SGD measure faster, the torch arm trains with
    them: its own layers are picked (its shapes, not the measurement's model's), and
    results.json records what ran."""
    import torch

    from alexnet_course.compare import convs, settings

    used, fused, common = _nnpack_measures_faster(monkeypatch)
    assert main([*common, "--out", str(tmp_path / "on")]) == 0
    res = json.loads((tmp_path / "on" / "torch-scratch" / "results.json").read_text())
    assert res["status"] == "ok", res.get("traceback")
    st = res["settings"]
    assert len(st["nnpack"]) == 4 and settings.describe_key(st).endswith("+nnpack")
    assert st["chosen_step_seconds"] == 0.5
    # the arm picked its own model's layers, and trained with exactly those
    assert used[-1] == convs.chosen(st["nnpack_arm_layers"]) == list(st["nnpack_arm_layers"])
    assert "NNPACK convolutions" in res["provenance"]["precision"]
    assert res["test_accuracy"] > 0.1  # it learnt through NNPACK's convolutions
    if settings.fused_sgd_available(torch.device("cpu")):  # measured, and recorded as it ran
        ms = st["sgd_step_ms"]
        assert st["fused_sgd"] == (ms["fused"] * settings.MIN_GAIN <= ms["default"])
        assert bool(fused) == st["fused_sgd"]
        assert all(all(g["fused"] for g in opt.param_groups) for opt in fused)


@own_process
def test_no_nnpack_keeps_nnpack_out_where_it_measures_faster(tmp_path, monkeypatch):
    """--no-nnpack: no NNPACK layer, measured faster or not, and the reason says so (a process
    of its own: a second comparison in the same one starts from the first's kept heap)."""
    used, _, common = _nnpack_measures_faster(monkeypatch)
    assert main([*common, "--no-nnpack", "--out", str(tmp_path / "off")]) == 0
    off = json.loads((tmp_path / "off" / "torch-scratch" / "results.json").read_text())
    assert off["settings"]["nnpack"] == [] and "nnpack_arm_layers" not in off["settings"]
    assert not any(used) and "NNPACK not allowed" in off["settings"]["reason"]


@own_process
def test_cpu_run_without_bf16_trains_in_fp32_and_records_it(tmp_path, monkeypatch):
    """The whole runner on a CPU forced to 'no bf16': the arm's results.json says fp32 and
    the settings that ran (the model never saw autocast)."""
    import dataclasses

    import torch

    from alexnet_course.compare import runner

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setitem(runner.PROFILES, "smoke",
                        dataclasses.replace(runner.PROFILES["smoke"], bf16=True, tune=True,
                                            train_limit=64))
    from alexnet_course.compare import torch_arm

    seen = []
    real = torch_arm.autocast_forward
    monkeypatch.setattr(torch_arm, "autocast_forward", lambda m, *a: seen.append(m) or real(m, *a))
    out = tmp_path / "run"
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", "torch-scratch", "--epochs", "1"]) == 0  # fmt: skip
    res = json.loads((out / "torch-scratch" / "results.json").read_text())
    assert res["status"] == "ok", res.get("traceback")
    assert res["settings"]["autocast"] is None and res["settings"]["bf16_supported"] is False
    assert {"fp32", "fp32+channels_last"} <= set(res["settings"]["step_seconds"]) <= \
        {"fp32", "fp32+channels_last", "fp32+nnpack", "fp32+channels_last+nnpack"}
    assert res["provenance"]["precision"].startswith("fp32")
    assert not seen
    # what ran: every step is counted at the thread count it ran with
    threads = res["threads"]
    assert threads["start"] == torch.get_num_threads() == threads["end"]
    assert sum(threads["steps_at"].values()) == 64 // runner.PROFILES["smoke"].batch_size
    if sys.platform.startswith("linux"):
        assert "freed memory kept in the heap" in res["provenance"]["allocator"]


class _Machine:
    """A fake clock whose steps take ``cost[threads]`` seconds, and torch's thread setter."""

    def __init__(self, cost: dict[int, float], threads: int = 2):
        self.cost, self.threads, self.now, self.calls = cost, threads, 0.0, []

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def run(self, watch, steps: int) -> None:
        for _ in range(steps):
            self.now += self.cost[self.threads]
            watch.tick()


def _watch(machine: _Machine, **kw):
    from alexnet_course.compare.settings import ThreadWatch

    watch = ThreadWatch(set_threads=machine.set_threads, get_threads=lambda: machine.threads,
                        clock=lambda: machine.now, **kw)  # fmt: skip
    watch.restart()
    return watch


def test_threads_follow_the_load():
    """A neighbour takes a core: one thread fewer is faster, and the watch moves there; the
    neighbour leaves: it goes back. Every step is counted at the count it ran with."""
    m = _Machine({2: 1.0, 1: 0.7})  # busy: one thread is faster
    watch = _watch(m, first=10, every=50, probe=6)
    m.run(watch, 40)
    assert m.threads == 1 and watch.current == 1
    assert watch.switches[0]["from"] == 2 and watch.switches[0]["to"] == 1
    m.cost = {2: 0.5, 1: 0.7}  # idle again: two threads are faster
    m.run(watch, 100)
    assert m.threads == 2 and watch.switches[-1]["to"] == 2
    rec = watch.record()
    assert sum(rec["steps_at"].values()) == 140 and rec["end"] == 2


def test_threads_stay_when_the_other_count_is_no_faster():
    m = _Machine({2: 0.5, 1: 0.8})
    watch = _watch(m, first=10, every=50, probe=6)
    m.run(watch, 200)
    rec = watch.record()
    assert rec["switches"] == [] and rec["probes"] >= 2 and m.threads == 2
    # the probes are a small share of the steps, and each ends back at two threads
    assert rec["steps_at"]["1"] <= 0.15 * 200 and m.calls[-1] == 2
    m1 = _Machine({1: 0.5}, threads=1)  # one thread: nothing to choose, nothing changed
    one = _watch(m1)
    m1.run(one, 300)
    assert one.record()["steps_at"] == {"1": 300} and m1.calls == []


def test_a_budget_scales_every_arm_alike():
    """Epochs first, then the share of training images; the same for every arm, whatever
    each arm's own speed; the estimate fits the budget."""
    from alexnet_course.compare import plan

    steps = {"torch-scratch": 0.5, "torch-tv-scratch": 0.4, "keras-scratch": 0.8}
    costs = plan.arm_costs(list(steps), steps, n_train=45000, n_val=5000, n_test=10000,
                           batch_size=128, keras_train_eval=5000)  # fmt: skip
    full = plan.make_plan(costs, epochs=3, n_train=45000, budget_minutes=None)
    assert full.epochs == 3 and full.train_images == 45000
    roomy = plan.make_plan(costs, epochs=3, n_train=45000, budget_minutes=full.estimated_total_seconds)
    assert (roomy.epochs, roomy.train_images) == (3, 45000)
    two = plan.make_plan(costs, epochs=3, n_train=45000,
                         budget_minutes=(full.estimated_total_seconds * 0.7 + 30) / 60 / 0.9)
    assert (two.epochs, two.train_images) == (2, 45000) and "3 -> 2" in two.scale
    tight = plan.make_plan(costs, epochs=3, n_train=45000, budget_minutes=10)
    assert tight.epochs == 1 and 0 < tight.train_images < 45000
    assert tight.estimated_total_seconds <= 10 * 60 * plan.SAFETY - plan.REPORT_SECONDS
    assert set(tight.estimated_seconds) == set(steps)
    with pytest.raises(ValueError, match="too small"):
        plan.make_plan(costs, epochs=3, n_train=45000, budget_minutes=0.5)


def _measured(fp32: float, channels_last: float):
    """A stand-in for settings.measure_settings: fp32, with these step times."""

    def measure(make_model, device, **kw):
        return {"autocast": None, "channels_last": False, "bf16_supported": False, "threads": 1,
                "step_seconds": {"fp32": fp32, "fp32+channels_last": channels_last},
                "reason": "test"}  # fmt: skip

    return measure


def _budget_run(out, arms: str, budget: str) -> tuple[list, list, list]:
    """compare --profile smoke with a budget; each arm's results.json (all must be ok), its
    plan, and what it ran: (epochs, training images)."""
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", arms, "--budget-minutes", budget]) == 0  # fmt: skip
    results, plans, ran = [], [], []
    for arm in arms.split(","):
        res = json.loads((out / arm / "results.json").read_text())
        assert res["status"] == "ok", res.get("traceback")
        results.append(res)
        plans.append(res["plan"])
        ran.append((len(res["history"]["val_accuracy"]), res["provenance"]["split"]["train"]))
    return results, plans, ran


@own_process
def test_budget_run_records_the_same_scaling_for_every_arm_and_what_ran(tmp_path, monkeypatch, narrow_keras):
    """compare --budget-minutes on the smoke profile, with measured steps replaced by slow
    ones so that the budget bites: each arm ran the planned epochs on the planned images,
    and its results.json says so, with the settings it trained with."""
    from alexnet_course.compare import settings, timing

    monkeypatch.setattr(settings, "measure_settings", _measured(2.0, 2.5))
    monkeypatch.setattr(timing, "keras_step", lambda *a: 2.5)
    results, plans, ran = _budget_run(tmp_path / "run", "torch-scratch,keras-scratch", "1.2")
    for res in results:
        if res["arm"].startswith("torch"):
            assert res["settings"]["autocast"] is None and res["settings"]["channels_last"] is False
            assert res["provenance"]["precision"].startswith("fp32")
    assert all(p == plans[0] for p in plans)
    p = plans[0]
    assert p["budget_minutes"] == 1.2 and p["scale"] != "none"
    assert all(r == (p["epochs"], p["train_images"]) for r in ran), (ran, p)
    assert p["epochs"] == 1 and p["train_images"] < p["train_images_unscaled"] == 192


@own_process
def test_budget_plan_is_made_again_when_the_first_arm_runs_slower(tmp_path, monkeypatch, capsys,
                                                                  narrow_keras):
    """The plan comes from short measurements; when the first arm's running steps are much
    slower (a busier machine, a probe that flattered), the plan is made again from them
    before any arm has finished, the arm starts afresh, and every arm runs the new plan."""
    import itertools

    from alexnet_course.compare import callbacks, settings, timing

    monkeypatch.setattr(settings, "measure_settings", _measured(0.001, 0.002))
    monkeypatch.setattr(timing, "keras_step", lambda *a: 0.001)
    monkeypatch.setattr(callbacks, "REPLAN_STEPS", (1, 3))  # the smoke profile's epoch: 6 steps
    clock = itertools.count(0.0, 2.0)  # steps 2-3 take 2 s each on this clock
    monkeypatch.setattr(callbacks, "clock", lambda: next(clock))
    _, plans, ran = _budget_run(tmp_path / "run", "torch-scratch,keras-scratch", "1.2")
    assert "the plan is made again" in capsys.readouterr().out
    assert all(p == plans[0] for p in plans)
    p = plans[0]
    check = p["check"]
    assert check["arm"] == "torch-scratch" and check["step_seconds"] == 2.0
    assert check["ratio"] > 50 and check["before"] == {
        "epochs": 2, "train_images": 192, "estimated_total_seconds": check["before"][
            "estimated_total_seconds"]}  # fmt: skip
    assert (p["epochs"], p["train_images"]) < (2, 192) and p["epochs"] == 1
    assert all(r == (p["epochs"], p["train_images"]) for r in ran), (ran, p)  # afresh: 1 epoch


@own_process
def test_budget_plan_stands_when_the_first_arm_runs_as_planned(tmp_path, monkeypatch):
    from alexnet_course.compare import callbacks, settings, timing

    monkeypatch.setattr(settings, "measure_settings", _measured(1.0, 1.1))
    monkeypatch.setattr(timing, "batch_seconds", lambda *a: 0.0)
    monkeypatch.setattr(callbacks, "REPLAN_STEPS", (1, 3))
    clock = iter([0.0, 1.04, 2.08])  # 1.04 s a step: within the tolerance
    monkeypatch.setattr(callbacks, "clock", lambda: next(clock))
    (res,), _, _ = _budget_run(tmp_path / "run", "torch-scratch", "10")
    assert res["plan"]["check"]["ratio"] == 1.04 and "before" not in res["plan"]["check"]
    assert "plan stands" in res["plan"]["check"]["why"]
    assert len(res["history"]["val_accuracy"]) == res["plan"]["epochs"] == 2


def test_published_results_carry_no_machine_paths(tmp_path, monkeypatch):
    """Paths in results are relative to the working folder or start with ~; the committed
    results (docs/results) hold no absolute path at all."""
    import re
    from pathlib import Path

    from alexnet_course.provenance import public_path, public_text
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)
    assert public_path(tmp_path / "data" / "cifar-10-batches-py") == "data/cifar-10-batches-py"
    home = Path.home()
    assert public_path(home / ".cache" / "torch") == "~/.cache/torch"
    text = f"not found at {home}/.cache/torch/x.pth; see {tmp_path}/data"
    assert public_text(text) == "not found at ~/.cache/torch/x.pth; see ./data"
    import sys
    import tempfile

    tmp = Path(tempfile.gettempdir()).resolve()
    monkeypatch.chdir("/")  # the temp and home folders outside the working folder
    monkeypatch.delenv("TMPDIR", raising=False)  # unset: the path as it is, never "$TMPDIR"
    assert public_path(tmp / "data") == str(tmp / "data")
    monkeypatch.setenv("TMPDIR", str(tmp))
    assert public_path(tmp / "data") == "$TMPDIR/data"
    assert public_text(f"{sys.executable} -m pytest --out {tmp}/x") == "python3 -m pytest --out $TMPDIR/x"
    # a whole folder name only
    assert public_text(f"{home}") == "~" and public_text(f"{home}x/a") == f"{home}x/a"
    absolute = re.compile(r"(?<![\w.~])/(?:root|home|work|tmp|Users|opt|var)/")
    for f in (ROOT / "docs" / "results").rglob("*"):
        if f.suffix in (".json", ".md"):
            hits = absolute.findall(f.read_text())
            assert not hits, (f, hits[:3])


def test_provenance_names_uncommitted_changes(tmp_path):
    """A run made from a checkout with edits did not run its commit's code alone: the
    provenance lists the changed files and the reports say so beside the commit."""
    import shutil
    import subprocess

    from alexnet_course.compare.report import commit_text
    from alexnet_course.provenance import git_commit, git_uncommitted

    if shutil.which("git") is None:
        pytest.skip("no git on this machine")

    def git(*argv):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=tmp_path,
                       check=True, capture_output=True)  # fmt: skip

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "a")
    (tmp_path / "new.txt").write_text("untracked: not code that ran\n")
    sha = git_commit(tmp_path)
    assert len(sha) == 40 and git_uncommitted(tmp_path) == []
    assert commit_text({"git_commit": sha, "git_uncommitted": []}) == sha[:10]
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "r.json").write_text("{}")
    git("add", "docs")
    git("commit", "-q", "-m", "a result")
    sha = git_commit(tmp_path)
    (tmp_path / "docs" / "results" / "r.json").write_text('{"new": 1}')
    assert git_uncommitted(tmp_path) == []  # a run's own outputs are not code that ran
    assert git_uncommitted(tmp_path / "docs") == []  # from a folder below the top too
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_uncommitted(tmp_path) == ["M a.py"]
    assert commit_text({"git_commit": sha, "git_uncommitted": ["M a.py"]}) == \
        f"{sha[:10]} with uncommitted changes to 1 file (a.py)"
    many = [f"M f{i}.py" for i in range(4)]
    assert commit_text({"git_commit": sha, "git_uncommitted": many}) == \
        f"{sha[:10]} with uncommitted changes to 4 files"
    assert git_uncommitted(tmp_path / "nowhere") == []  # no checkout: nothing to say


def test_hardware_names_the_cpu_kernels_and_any_limit_on_them(monkeypatch):
    """A run on an emulated older CPU (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2) must
    not read as a run on this one."""
    import torch

    from alexnet_course.provenance import KERNEL_ENV, hardware_text

    for k in KERNEL_ENV:
        monkeypatch.delenv(k, raising=False)
    plain = hardware_text(torch.device("cpu"))
    assert f"{torch.get_num_threads()} torch threads" in plain and "limited by" not in plain
    assert torch.backends.cpu.get_cpu_capability() in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "(limited by ONEDNN_MAX_CPU_ISA=AVX2)" in hardware_text(torch.device("cpu"))


@own_process
def test_budget_plan_goes_back_up_when_the_first_arm_runs_faster(tmp_path, monkeypatch):
    """A plan the budget cut, from a measurement that flattered the machine's load the other
    way: the first arm's steps run much faster, so the plan is made again upwards before any
    arm has finished, and the report says what the budget did."""
    import itertools

    from alexnet_course.compare import callbacks, settings, timing

    # 2 epochs of 6 steps at 6 s do not fit 1.2 minutes: the budget cuts the plan
    monkeypatch.setattr(settings, "measure_settings", _measured(6.0, 7.5))
    monkeypatch.setattr(timing, "batch_seconds", lambda *a: 0.0)
    monkeypatch.setattr(callbacks, "REPLAN_STEPS", (1, 3))
    clock = itertools.count(0.0, 0.001)
    monkeypatch.setattr(callbacks, "clock", lambda: next(clock))
    (res,), _, ran = _budget_run(tmp_path / "run", "torch-scratch", "1.2")
    check = res["plan"]["check"]
    assert check.get("direction") == "up" and check["ratio"] < 0.01, check["why"]
    assert check["before"]["epochs"] == 1 and check["before"]["train_images"] < 192
    assert ran[0] == (res["plan"]["epochs"], res["plan"]["train_images"]) == (2, 192)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "--budget-minutes 1.2" in report and "made again" in report



@own_process
def test_budget_plans_only_the_arms_that_will_run(tmp_path, monkeypatch, narrow_keras):
    """Offline, no ImageNet weights cached (the download is allowed and fails): the plan
    counts only the three arms that run, records the two skipped with their reasons, and
    the report says so; a second run reuses the measurement (and says so)."""
    import torch

    from alexnet_course.compare import settings, timing

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    calls = []
    measured = _measured(0.01, 0.02)
    monkeypatch.setattr(settings, "measure_settings", lambda *a, **k: calls.append(1) or measured(*a, **k))
    monkeypatch.setattr(timing, "keras_step", lambda *a: 0.01)
    out = tmp_path / "run"
    args = ["compare", "--profile", "smoke", "--out", str(out), "--budget-minutes", "30",
            "--epochs", "1"]  # fmt: skip
    assert main(args) == 0
    results = {r: json.loads((out / r / "results.json").read_text()) for r in
               ("torch-scratch", "torch-tv-scratch", "keras-scratch", "torch-pretrained",
                "keras-pretrained")}  # fmt: skip
    plan = results["torch-scratch"]["plan"]
    assert set(plan["estimated_seconds"]) == {"torch-scratch", "torch-tv-scratch", "keras-scratch"}
    assert set(plan["skipped"]) == {"torch-pretrained", "keras-pretrained"}
    assert all("could not be downloaded" in why for why in plan["skipped"].values())
    assert results["torch-pretrained"]["status"] == "skipped"
    assert "planned for no time" in (out / "report.md").read_text()
    assert len(calls) == 1
    # the same machine, one arm (keeping the process under 2.5 GB): measured once
    assert main([*args[:4], str(tmp_path / "again"), *args[5:], "--arms", "torch-scratch"]) == 0
    assert len(calls) == 1
    again = json.loads((tmp_path / "again" / "torch-scratch" / "results.json").read_text())
    assert again["settings"]["cached"]


@own_process
def test_a_budget_too_small_is_refused_with_what_would_fit(tmp_path, monkeypatch, capsys):
    """Refused right after measuring, with the smallest budget for these arms, and nothing
    left behind; the suggestion names the arms that fit the budget given."""
    from alexnet_course.compare import plan, settings, timing

    monkeypatch.setattr(settings, "measure_settings", _measured(2.0, 2.5))
    monkeypatch.setattr(timing, "keras_step", lambda *a: 2.5)
    out = tmp_path / "new" / "run"
    assert main(["compare", "--profile", "smoke", "--out", str(out), "--no-download",
                 "--arms", "torch-scratch,keras-scratch", "--budget-minutes", "0.2"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "too small" in err and "Give --budget-minutes" in err, err
    assert not (tmp_path / "new").exists()  # a refused run leaves nothing behind
    costs = plan.arm_costs(["torch-scratch", "keras-scratch"], {"torch-scratch": 1.0,
                           "keras-scratch": 30.0}, n_train=45000, n_val=5000, n_test=10000,
                           batch_size=128, keras_train_eval=5000)  # fmt: skip
    alone = plan.minimum_minutes(costs[:1], 45000)
    text = plan.too_small(costs, epochs=3, n_train=45000, budget_minutes=alone + 1)
    assert f"Give --budget-minutes {int(plan.minimum_minutes(costs, 45000)) + 1}" in text
    assert "--arms torch-scratch (" in text


def test_a_report_with_no_arm_run_says_so_instead_of_an_error():
    """Every arm skipped (no weights, no TensorFlow, all refused): the report's lesson 05
    part says there was nothing to analyse, not a ValueError from an empty max()."""
    from alexnet_course.compare.report import lesson_analysis
    from alexnet_course.course import load_lesson_module

    analysis = load_lesson_module("05_analysis", "analysis", impl="solutions")
    results = [{"arm": a, "status": "skipped", "reason": "no weights"}
               for a in ("torch-pretrained", "keras-pretrained")]  # fmt: skip
    text = "\n".join(lesson_analysis(results, analysis, "solutions"))
    assert "Written analysis: none, as no arm ran." in text
    assert "Error" not in text and "not available" not in text
