"""Lesson 03's graded suite: passes on the solution, fails on the stubs, and catches typical
wrong implementations (each mutant below is a mistake learners make)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT, copy_lesson, run_pytest

LESSON = "03_torch_scratch"

# (name, file, exact text in the solution, replacement): each is one typical mistake.
MUTANTS = [
    ("conv1_stride_2", "alexnet.py", "kernel_size=11, stride=4", "kernel_size=11, stride=2"),
    ("conv2_padding_1", "alexnet.py", "kernel_size=5, padding=2", "kernel_size=5, padding=1"),
    ("conv1_missing_relu", "alexnet.py",
     "nn.Conv2d(3, 96, kernel_size=11, stride=4),  # (N, 96, 55, 55)\n        nn.ReLU(inplace=True),",
     "nn.Conv2d(3, 96, kernel_size=11, stride=4),"),
    ("lrn_missing", "alexnet.py", "return paper_lrn()", "return nn.Identity()"),
    ("lrn_alpha_not_scaled", "alexnet.py", "alpha=5 * 1e-4", "alpha=1e-4"),
    ("lrn_k_1", "alexnet.py", "beta=0.75, k=2.0", "beta=0.75, k=1.0"),
    ("flatten_channels_last", "alexnet.py", "x = torch.flatten(x, 1)",
     "x = torch.flatten(x.permute(0, 2, 3, 1), 1)"),
    ("flatten_size_wrong", "alexnet.py", "nn.Linear(256 * 6 * 6, 4096)", "nn.Linear(256 * 5 * 5, 4096)"),
    ("pool_2_2", "alexnet.py", "nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 96, 27, 27)",
     "nn.MaxPool2d(kernel_size=2, stride=2),"),
    ("softmax_output", "alexnet.py", "return self.classifier(x)  # (N, num_classes)",
     "return torch.softmax(self.classifier(x), dim=1)"),
    ("init_ignored", "alexnet.py", "        init_paper_weights(self)\n", ""),
    ("init_std_0_1", "alexnet.py", "mean=0.0, std=0.01)", "mean=0.0, std=0.1)"),
    ("bias_constants_wrong", "alexnet.py", "ones = {1, 3, 4, 5, 6}", "ones = {1, 3, 4}"),
    ("dropout_missing", "alexnet.py", "nn.Dropout(p=dropout),\n        nn.Linear(4096, 4096)",
     "nn.Linear(4096, 4096)"),
    ("softmax_before_cross_entropy", "train.py", "loss = loss_fn(logits, labels)",
     "loss = loss_fn(logits.softmax(1), labels)"),
    ("forgot_zero_grad", "train.py", "        optimizer.zero_grad(set_to_none=True)\n", ""),
    ("train_mode_not_set", "train.py", "    model.train()\n", ""),
    ("loss_not_weighted_by_batch", "train.py", "total_loss += loss.item() * len(labels)\n",
     "total_loss += loss.item()\n"),
    ("evaluate_in_training_mode", "train.py", "model.eval()", "model.train()"),
    ("per_class_over_subset", "train.py",
     "pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()",
     "pairs = (labels.cpu() * num_classes + logits.argmax(1).cpu())[:4]"),
    ("outputs_and_labels_swapped", "train.py",
     "pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()",
     "pairs = logits.argmax(1).cpu() * num_classes + labels.cpu()"),
    ("checkpoint_on_training_accuracy", "train.py",
     "if result.accuracy > history.best_val_accuracy:",
     "if train_acc >= max(history.train_accuracy):"),
    ("scheduler_never_stepped", "train.py", "            scheduler.step()\n", "            pass\n"),
    ("forward_does_extra_work", "alexnet.py",
     "x = self.features(x)  # (N, 256, 6, 6) at 227 px",
     "x = self.features(x)  # (N, 256, 6, 6) at 227 px\n"
     "        x = x + 0 * self.features(x.new_zeros(x.shape[0], 3, 227, 227)).mean()",
     "test_speed.py"),
]
# The graded test file that should catch a mistake in each learner file (the whole suite
# would too; targeting keeps this test fast).
TARGET = {"alexnet.py": "test_model.py", "train.py": "test_train.py"}


def test_graded_suite_passes_on_the_solution(tmp_path):
    rc, res, out = run_pytest(ROOT / "lessons" / LESSON, "--solutions", results=tmp_path / "r.json")
    assert rc == 0, out[-3000:]
    tests = res["tests"]
    assert len(tests) >= 20
    failed = [t["name"] for t in tests if t["status"] == "failed"]
    assert not failed, out[-3000:]
    assert res["score"] == res["max_score"] > 0
    assert f"{LESSON}: {res['score']:g}/{res['max_score']:g}" in out


def test_graded_suite_fails_every_test_on_the_stubs(tmp_path):
    rc, res, out = run_pytest(ROOT / "lessons" / LESSON, results=tmp_path / "r.json")
    assert rc == 1
    graded = [t for t in res["tests"] if t["status"] != "skipped"]
    assert graded and all(t["status"] == "failed" for t in graded), [
        t["name"] for t in graded if t["status"] != "failed"]
    assert res["score"] == 0
    assert all("not started" in t["tags"] for t in graded)
    assert "NOT STARTED" in out and f"{LESSON}: 0/" in out


def _apply(mutant, dest):
    name, file, old, new = mutant[:4]
    folder = copy_lesson(LESSON, dest / name)
    path = folder / file
    text = path.read_text()
    assert text.count(old) == 1, f"mutant {name}: {old!r} found {text.count(old)} times"
    path.write_text(text.replace(old, new))
    return folder


def test_mutants_are_all_applicable(tmp_path):
    assert len(MUTANTS) >= 12
    for m in MUTANTS:
        _apply(m, tmp_path)


@pytest.mark.slow
def test_every_typical_mistake_is_caught(tmp_path):
    def run(mutant):
        folder = _apply(mutant, tmp_path)
        target = folder / (mutant[4] if len(mutant) > 4 else TARGET[mutant[1]])
        rc, res, out = run_pytest(target, "-x", "--benchmark-disable",
                                  results=tmp_path / f"{mutant[0]}.json",
                                  env={"OMP_NUM_THREADS": "1"})  # two at a time on 2 cores
        failed = [t["name"] for t in res.get("tests", []) if t["status"] == "failed"]
        return mutant[0], rc, failed, out

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, MUTANTS))
    survivors = [(name, out[-1500:]) for name, rc, failed, out in outcomes if rc == 0 or not failed]
    assert not survivors, "mutants the graded suite accepted:\n" + "\n\n".join(
        f"{n}:\n{o}" for n, o in survivors)
