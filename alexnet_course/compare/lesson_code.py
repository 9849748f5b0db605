"""The lessons' code a comparison runs: every decision a lesson teaches is made by that
lesson's code, from ``--impl solutions`` or ``--impl lessons`` (a learner's own files).

* lesson 01: the stratified split, the channel statistics (the normalisation constants),
  the preprocessing and the augmentation;
* lesson 02: the pretrained model, its own preprocessing and its optimizer;
* lessons 03 and 04: the models and the training loops;
* lesson 05: the report's analysis (the table, per-class accuracy, the overfitting gap,
  what pretraining buys, the written analysis).

:func:`LessonCode.preflight` calls each function the run will use on a tiny input before
any training: an unfinished task stops the run with one line that names it and its page.
Where the library keeps a faster equivalent for the per-batch hot path (the device-side
augmentation and preprocessing of :mod:`alexnet_course.data.torch_pipeline`),
:func:`LessonCode.fast_paths` checks it equal to the lesson's function on the same inputs,
and the run uses the lesson's own function wherever it is not.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.course import course_root, load_lesson_module

FILES = {  # (lesson, file) of each module the run may use
    "data": ("01_data", "data"),
    "pretrained": ("02_torch_pretrained", "pretrained"),
    "alexnet": ("03_torch_scratch", "alexnet"),
    "train": ("03_torch_scratch", "train"),
    "keras_alexnet": ("04_keras_scratch", "keras_alexnet"),
    "keras_train": ("04_keras_scratch", "keras_train"),
    "analysis": ("05_analysis", "analysis"),
}
TASK = re.compile(r"Task (\d+\.\d+)")


class TaskUnfinished(CourseError):
    """A lesson function the run needs is still a stub (or fails on a tiny input)."""


@dataclass
class LessonCode:
    """The lessons' modules of one implementation, imported on first use."""

    impl: str
    root: Path = field(default_factory=course_root)
    _modules: dict = field(default_factory=dict, repr=False)

    def module(self, key: str) -> types.ModuleType:
        if key not in self._modules:
            lesson, name = FILES[key]
            if key.startswith("keras"):
                start_tensorflow_quietly()
            self._modules[key] = load_lesson_module(lesson, name, self.impl, self.root)
        return self._modules[key]

    def __getattr__(self, key: str):
        if key in FILES:
            return self.module(key)
        raise AttributeError(key)

    # ------------------------------------------------------------ lesson 01: the data
    def split(self, labels, val_size: int, seed: int):
        """Lesson 01's ``stratified_split``: ``(train_idx, val_idx)``."""
        return self.data.stratified_split(labels, val_size, seed)

    def channel_stats(self, images):
        """Lesson 01's ``channel_stats`` of uint8 (N, H, W, 3) images: ``(mean, std)``."""
        import numpy as np

        mean, std = self.data.channel_stats(images)
        return tuple(float(v) for v in np.asarray(mean)), tuple(float(v) for v in np.asarray(std))

    def fast_paths(self) -> dict:
        """Which augmentation and preprocessing the torch arms use: the library's device-side
        ones where they give exactly what lesson 01's do on a probe batch (the same images,
        the same generator), else the lesson's own. Returns the record for results.json."""
        import numpy as np
        import torch

        from alexnet_course.data import torch_pipeline as tp

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
        mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
        record = {}
        ours = tp.augment(torch.from_numpy(images), torch.Generator().manual_seed(5))
        theirs = self.data.augment(torch.from_numpy(images), torch.Generator().manual_seed(5))
        same = tuple(ours.shape) == tuple(theirs.shape) and torch.equal(ours, theirs.to(ours.dtype))
        record["augment"] = ("library (device-side; equal to lesson 01's augment on a probe)"
                             if same else "lesson 01's augment (differs from the library's)")  # fmt: skip
        ours = tp.preprocess(torch.from_numpy(images), mean, std, 67)
        theirs = self.data.preprocess(images, mean, std, 67)
        same = (tuple(ours.shape) == tuple(theirs.shape)
                and torch.allclose(ours, theirs.float(), atol=1e-5, rtol=1e-5))  # fmt: skip
        record["preprocess"] = ("library (device-side; equal to lesson 01's preprocess on a "
                                "probe)" if same else "lesson 01's preprocess (differs from the "
                                "library's)")  # fmt: skip
        record["impl"] = self.impl
        return record

    def keras_fast_path(self) -> tuple:
        """``(preprocess_fn or None, record)`` for the Keras arms: the library's tf.data
        preprocessing where it equals lesson 01's ``keras_preprocess`` on a probe, else the
        lesson's own."""
        import numpy as np

        from alexnet_course.data import keras_pipeline as kp

        images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
        ours = np.asarray(kp.preprocess(images, mean, std, 67))
        theirs = np.asarray(self.data.keras_preprocess(images, mean, std, 67))
        if ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-5, rtol=1e-5):
            return None, "library (tf.data; equal to lesson 01's keras_preprocess on a probe)"
        return self.data.keras_preprocess, "lesson 01's keras_preprocess (differs from the library's)"

    # ------------------------------------------------------------ before any training
    def preflight(self, arms: list[str]) -> None:
        """Call every lesson function the run will use on a tiny input; an unfinished task
        raises :class:`TaskUnfinished` naming it and its page."""
        import numpy as np

        labels = np.repeat(np.arange(3), 4)
        images = np.zeros((4, 32, 32, 3), np.uint8)
        checks = [
            ("01_data", "stratified_split", lambda: self.split(labels, 3, 0)),
            ("01_data", "channel_stats", lambda: self.channel_stats(images)),
            ("01_data", "preprocess", lambda: self.data.preprocess(images, (0.5,) * 3,
                                                                    (0.25,) * 3, 32)),  # fmt: skip
            ("01_data", "augment", lambda: self.data.augment(_torch_images(images),
                                                              _generator())),  # fmt: skip
            ("05_analysis", "per_class_accuracy",
             lambda: self.analysis.per_class_accuracy(np.eye(3, dtype=np.int64))),
            ("05_analysis", "comparison_table", lambda: self.analysis.comparison_table([])),
            ("05_analysis", "overfitting_gap", lambda: self.analysis.overfitting_gap(
                {"history": {"train_accuracy": [0.5], "val_accuracy": [0.4]}})),
            ("05_analysis", "pretraining_gain", lambda: _gain_probe(self.analysis)),
            ("05_analysis", "analysis", lambda: self.analysis.analysis(_probe_results())),
        ]
        if any(a in ("torch-scratch", "keras-scratch") for a in arms):
            checks += [("03_torch_scratch", "AlexNet", lambda: self.alexnet.AlexNet(
                num_classes=3, norm="batch"))]
        if any(a.startswith("torch") for a in arms):
            checks += [("03_torch_scratch", "train_one_epoch", lambda: _tiny_epoch(self.train)),
                       ("03_torch_scratch", "evaluate", lambda: _tiny_eval(self.train))]
        if "torch-pretrained" in arms:
            checks += [("02_torch_pretrained", "preprocessing", self.pretrained.preprocessing)]
        if any(a.startswith("keras") for a in arms) and _has_tensorflow():
            checks += [("04_keras_scratch", "build_alexnet", lambda: _started(
                lambda: self.keras_alexnet.build_alexnet(3, "batch", 1)))]  # fmt: skip
        for lesson, name, call in checks:
            try:
                call()
            except NotImplementedError as e:
                raise TaskUnfinished(_unfinished(lesson, name, str(e), self.impl)) from None
            except CourseError:
                raise
            except Exception as e:  # a finished task that fails on a tiny input
                raise TaskUnfinished(f"lesson {lesson[:2]}'s {name} ({self.impl}) fails before "
                                     f"any training: {type(e).__name__}: {str(e)[:200]}; run "
                                     f"`pytest lessons/{lesson}` to see why") from None  # fmt: skip


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to the process's stderr (file descriptor 2), such
    as TensorFlow's C++ start-up lines, for the duration."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and start its devices without its start-up lines (its CPU
    features, a failed cuInit where there is no GPU: noise to a user of the comparison)."""
    if "tensorflow" in sys.modules or not _has_tensorflow():
        return
    # torch's libraries first, torchvision's included: torchvision imported after TensorFlow
    # crashes the process (a segmentation fault, this machine's wheels)
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_stderr():
        import tensorflow as tf

        tf.constant(0) + 0


def _unfinished(lesson: str, name: str, message: str, impl: str) -> str:
    m = TASK.search(message)
    task = m.group(1) if m else "?"
    page = f"docs/lessons/{lesson}.md#task-{task.replace('.', '-')}"
    return (f"lesson {lesson[:2]}'s {name} is not done yet (Task {task}, {page}; --impl "
            f"{impl}): finish it (`pytest lessons/{lesson} -m task{task.replace('.', '_')}`) "
            "before running the comparison on your code")  # fmt: skip


def _started(call) -> None:
    """Whether a lesson function is started, without its full cost: called on an input too
    small to build (a 1-pixel image), a stub still raises NotImplementedError first, while a
    written function fails on the size (or builds a tiny model), which is fine here."""
    try:
        call()
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - the size, not the code: the arm will show real errors
        pass


def _has_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def _torch_images(images):
    import torch

    return torch.from_numpy(images)


def _generator():
    import torch

    return torch.Generator().manual_seed(0)


def _probe_results() -> list[dict]:
    hist = {"train_loss": [1.0], "val_loss": [1.1], "train_accuracy": [0.6],
            "val_accuracy": [0.5], "epoch_seconds": [1.0]}  # fmt: skip
    return [{"arm": arm, "status": "ok", "test_accuracy": acc, "train_seconds": 60.0,
             "history": hist} for arm, acc in (("torch-pretrained", 0.8),
                                               ("torch-tv-scratch", 0.6))]  # fmt: skip


def _gain_probe(analysis) -> float:
    return analysis.pretraining_gain(_probe_results())


def _tiny_epoch(train) -> None:
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    batches = [(torch.zeros(2, 3, 2, 2), torch.tensor([0, 1]))]
    train.train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1))


def _tiny_eval(train) -> None:
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    train.evaluate(model, [(torch.zeros(2, 3, 2, 2), torch.tensor([0, 1]))], 3)
