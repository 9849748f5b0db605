"""Graded tests for lesson 03, part 2: the training loop (tasks 3.8 - 3.10).

Graded by behaviour: your loop must update the weights exactly as the reference loop written
out here does, your metrics must equal hand-computed values over every sample, and your
``fit`` must keep the epoch with the best VALIDATION accuracy.

Each test has two halves: an ``_observe_*`` function that runs your code from a start this
file chose (weights, batches) and returns data (end weights, losses, metrics), and the test
itself, which runs the reference loop from the same start and compares.
"""

import numbers
import os
import re
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, observed
from alexnet_course.grading.draws import drawn
from alexnet_course.grading.remote import observe

train = learner.load(__file__, "train")
alexnet = learner.load(__file__, "alexnet")
DOCS = "docs/lessons/03_torch_scratch.md"


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def tiny_net(seed=0, classes=4) -> nn.Module:
    """A small convnet with BatchNorm and dropout: train/eval mode changes what it computes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.0), nn.Linear(8 * 4 * 4, classes),
    )  # fmt: skip


def tiny_from(state: dict, classes=4) -> nn.Module:
    model = tiny_net(classes=classes)
    model.load_state_dict(state)
    return model


def fixed_batches(n_batches=3, size=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n_batches)]  # fmt: skip


def reference_epoch(model, batches, optimizer, autocast_dtype=None, loss_fn=F.cross_entropy):
    model.train()
    losses, correct, seen = 0.0, 0, 0
    for x, y in batches:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(x)
            loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        losses += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return losses / seen, correct / seen


def _loss_fn(spec):
    """A loss the test chooses, never the default: cross-entropy with label smoothing, or the
    multi-class margin (hinge) loss; both take logits and class indices, mean over the batch."""
    if spec is None:
        return None
    name, value = spec
    if name == "label_smoothing":
        return nn.CrossEntropyLoss(label_smoothing=value)
    return nn.MultiMarginLoss(margin=value)


LOSS = st.tuples(st.sampled_from(["label_smoothing", "margin"]), st.floats(0.1, 0.9))


@st.composite
def _batches(draw, classes):
    """Batches of drawn sizes (a last one often smaller) with drawn labels: unbalanced,
    classes missing, none tied to its position. Images from a drawn seed."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    labels = [draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)) for n in sizes]
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return [(torch.randn(len(y), 3, 8, 8, generator=g), torch.tensor(y)) for y in labels]


def _sizes(batches) -> str:
    return f"batches of {[len(y) for _, y in batches]}, labels {[y.tolist() for _, y in batches]}"


def _numbers(value):
    """A returned (loss, accuracy) pair as floats, or None when it is not a pair of numbers."""
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError, RuntimeError):
        return None


def _on_forward(model: nn.Module, record) -> None:
    """Call ``record(model, x)`` at each forward of ``model``, however the learner calls it:
    ``model(x)`` and ``model.forward(x)`` alike (a forward hook misses the second), and in
    copies of the model too (the recording class is shared; deepcopy keeps it)."""
    base = type(model)

    def forward(self, x, *args, **kwargs):
        record(self, x)
        return base.forward(self, x, *args, **kwargs)

    model.__class__ = type(base.__name__, (base,), {"forward": forward})


def _autocast_recorder(model: nn.Module, with_mode: bool = False) -> list:
    """Record, at each forward of ``model``, the autocast dtype in effect (None: off); with
    ``with_mode``, as ``(model.training, dtype)`` pairs."""
    seen: list = []

    def record(module, x):
        on = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
        device = "cpu" if torch.is_autocast_enabled("cpu") else "cuda"
        dtype = str(torch.get_autocast_dtype(device)) if on else None
        seen.append((module.training, dtype) if with_mode else dtype)

    _on_forward(model, record)
    return seen


def _one_dtype(dtypes) -> torch.dtype | None:
    """The autocast dtype the learner's forwards ran under, when it is one (None: off)."""
    on = {d for d in dtypes if d is not None}
    return getattr(torch, on.pop().split(".")[-1]) if len(on) == 1 else None


def _fit_autocast(seen) -> tuple:
    """From ``(training, dtype)`` records of a fit: the dtype of the training forwards and
    that of the evaluation forwards (each None when autocast was off)."""
    return (_one_dtype(d for training, d in seen if training),
            _one_dtype(d for training, d in seen if not training))  # fmt: skip


def _amp_tolerance(dtypes) -> dict:
    """fp32 tolerances, or a half-precision one when any forward ran under autocast: the
    reference then runs under the same autocast, the same arithmetic but not the same bits."""
    return {"atol": 1e-5, "rtol": 1e-4} if not any(dtypes) else {"atol": 1e-2, "rtol": 2e-2}


# ---------------------------------------------------------------- Task 3.8: train_one_epoch
def _observe_train_one_epoch(state, batches):
    model = tiny_from(state)
    model.eval()  # your function must switch to training mode itself
    autocast = _autocast_recorder(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    got = train.train_one_epoch(model, batches, opt, nn.CrossEntropyLoss())
    return {"is_pair": isinstance(got, tuple) and len(got) == 2, "repr": repr(got)[:200],
            "got": _numbers(got), "params": dict(model.named_parameters()),
            "training": model.training, "autocast": autocast}  # fmt: skip


@pytest.mark.task("3.8", points=3)
def test_train_one_epoch_matches_reference_loop():
    batches = fixed_batches()
    start = tiny_net().state_dict()
    o = observe(_observe_train_one_epoch, start, batches)
    expect(o["is_pair"] and o["got"] is not None, "train_one_epoch returns",
           "(mean loss, accuracy)", o["repr"], docs=docs("3.8"))  # fmt: skip
    dtype = _one_dtype(o["autocast"])
    ref = tiny_from(start)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    want = reference_epoch(ref, batches, opt_ref, dtype)
    # under autocast (bf16 or fp16) the reference runs under it too, at a half-precision
    # tolerance: the same arithmetic, not the same bits
    tol = _amp_tolerance([dtype])
    amp = ("" if dtype is None else f" (your forward ran under autocast {dtype}: compared "
           f"with the reference under the same autocast)")  # fmt: skip
    amp_hint = ("" if dtype is None else "; autocast belongs around each step's forward and "
                "loss only (never around the whole epoch, and never the backward)")  # fmt: skip
    expect_close(np.array(o["got"], dtype=float), np.array(want), "train_one_epoch (mean loss "
                 f"per sample, accuracy) against the reference loop{amp}", **tol,
                 hint="the loss of the raw logits (no softmax first); each batch's loss "
                      "weighs as many samples as it holds" + amp_hint, docs=docs("3.8"))  # fmt: skip
    for (name, p), q in zip(o["params"].items(), ref.parameters()):
        expect_close(p, q, f"weights '{name}' after one epoch, against the reference loop{amp}",
                     **tol, hint="one step per batch, in training mode, from that batch's "
                     "own gradient: gradients left from the previous batch add up with the "
                     "new ones" + amp_hint, docs=docs("3.8"))  # fmt: skip
    expect(o["training"], "the model's mode after train_one_epoch", "training", "eval",
           docs=docs("3.8"))  # fmt: skip


def _observe_train_one_epoch_any(cases):
    seen = []
    for state, classes, batches, lr, momentum, loss in cases:
        model = tiny_from(state, classes)
        model.eval()
        autocast = _autocast_recorder(model)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        got = train.train_one_epoch(model, batches, opt, _loss_fn(loss))
        seen.append({"got": _numbers(got), "repr": repr(got)[:200],
                     "params": dict(model.named_parameters()), "autocast": autocast})  # fmt: skip
    return seen


@st.composite
def _epoch_case(draw):
    classes = draw(st.integers(2, 6))
    return (classes, draw(_batches(classes)), draw(st.floats(1e-3, 0.2)),
            draw(st.floats(0.0, 0.95)), draw(LOSS), draw(st.integers(0, 100)))  # fmt: skip


def _loss_name(spec) -> str:
    return "None" if spec is None else f"{'CrossEntropyLoss(label_smoothing' if spec[0] == 'label_smoothing' else 'MultiMarginLoss(margin'}={spec[1]:.3g})"


@pytest.mark.task("3.8", points=1)
@drawn(examples=8)
@given(cases=st.lists(_epoch_case(), min_size=2, max_size=2))
def test_train_one_epoch_with_drawn_loss_fn_and_batches(cases):
    starts = [tiny_net(seed, classes).state_dict() for classes, *_, seed in cases]
    got = observed(_observe_train_one_epoch_any, [(start, *case[:5]) for start, case in
                                                  zip(starts, cases)],
                   what="train_one_epoch(model, batches, SGD(lr, momentum), loss_fn) with drawn "
                   "batches, settings and loss_fn", docs=docs("3.8"))  # fmt: skip
    for start, (classes, batches, lr, momentum, loss, _), o in zip(starts, cases, got):
        call = (f"train_one_epoch({classes}-class model, {_sizes(batches)}, SGD(lr={lr:.4g}, "
                f"momentum={momentum:.4g}), loss_fn={_loss_name(loss)})")
        expect(o["got"] is not None and len(o["got"]) == 2, f"{call} returns",
               "(mean loss, accuracy)", o["repr"], docs=docs("3.8"))  # fmt: skip
        dtype = _one_dtype(o["autocast"])
        ref = tiny_from(start, classes)
        want = reference_epoch(ref, batches, torch.optim.SGD(ref.parameters(), lr=lr,
                               momentum=momentum), dtype, _loss_fn(loss))  # fmt: skip
        tol = _amp_tolerance([dtype])
        hint = ("the loss is loss_fn when one is given (cross-entropy only when it is None); "
                "each batch's loss weighs as many samples as it holds")
        expect_close(np.array(o["got"], dtype=float), np.array(want), f"{call}: (mean loss per "
                     "sample, accuracy) against the reference loop", **tol, hint=hint,
                     docs=docs("3.8"))  # fmt: skip
        for (name, p), q in zip(o["params"].items(), ref.parameters()):
            expect_close(p, q, f"{call}: weights '{name}' after the epoch, against the "
                         "reference loop", **tol, hint="one step per batch from the gradient of "
                         "that batch's loss_fn, with the optimizer given", docs=docs("3.8"))  # fmt: skip


def _observe_train_one_epoch_on_gpu(state, batches):
    model = tiny_from(state).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    autocast = _autocast_recorder(model)
    train.train_one_epoch(model, batches, opt)  # CPU batches, CUDA model
    return {"params": dict(model.named_parameters()), "autocast": autocast}


@pytest.mark.task("3.8", points=1)
@pytest.mark.gpu
def test_train_one_epoch_moves_batches_to_the_models_device():
    batches = fixed_batches()
    start = tiny_net().state_dict()
    o = observe(_observe_train_one_epoch_on_gpu, start, batches)
    ref = tiny_from(start)
    reference_epoch(ref, batches, torch.optim.SGD(ref.parameters(), lr=0.1))
    # TF32 convolutions on the GPU (and autocast, if you use it) round differently
    tol = 2e-2 if any(o["autocast"]) else 1e-3
    for (name, p), q in zip(o["params"].items(), ref.parameters()):
        expect_close(p, q, f"weights '{name}' after one epoch on the GPU (CPU batches), "
                     "against the reference loop on the CPU", atol=tol, rtol=10 * tol,
                     hint="move each batch to the model's device (the device of its "
                          "parameters) before the forward pass", docs=docs("3.8"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.9: evaluate
def _ids(x: torch.Tensor) -> torch.Tensor:
    """The sample ids a batch carries: images of shape (N, 1, 1, 1), so that a learner may
    move them as image batches (``.to(memory_format=torch.channels_last)`` needs 4-D)."""
    return x.reshape(len(x), -1)[:, 0].long()


class KnownPredictions(nn.Module):
    """Returns fixed logits per sample id (carried in the input); noise in training mode and
    it records whether gradients were enabled."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(logits.clone(), requires_grad=False)
        self.grad_enabled: list[bool] = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        out = self.table[_ids(x)]
        if self.training:
            out = out + 100 * torch.randn_like(out)
        return out


def known_fixture():
    # 12 samples in batches of 5, 5, 2; 3 classes; predictions chosen by hand
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    preds = torch.tensor([0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1])
    logits = F.one_hot(preds, 3).float() * 5.0
    ids = torch.arange(12).float()[:, None, None, None]
    batches = [(ids[s], labels[s]) for s in (slice(0, 5), slice(5, 10), slice(10, 12))]
    # by hand: class 0 -> predicted 0,0,1,0 ; class 1 -> 1,2,1,1 ; class 2 -> 2,2,0,1
    confusion = np.array([[3, 1, 0], [0, 3, 1], [1, 1, 2]])
    return logits, labels, batches, confusion


def _observe_evaluate(logits, batches):
    model = KnownPredictions(logits)
    model.train()  # evaluate must switch to eval mode itself
    result = train.evaluate(model, batches, num_classes=3)
    return {"confusion": np.asarray(result.confusion_matrix).tolist(),
            "per_class": np.asarray(result.per_class_accuracy, dtype=float),
            "accuracy": float(result.accuracy), "loss": float(result.loss),
            "grad_enabled": model.grad_enabled}  # fmt: skip


@pytest.mark.task("3.9", points=3)
def test_evaluate_counts_every_sample():
    logits, labels, batches, confusion = known_fixture()
    o = observe(_observe_evaluate, logits, batches)
    expect_equal(o["confusion"], confusion.tolist(),
                 "confusion matrix (rows: true class, columns: predicted class) over all 12 "
                 "samples", hint=_confusion_hint(o["confusion"], confusion, "count every "
                                                 "sample of every batch, not a subset"),
                 docs=docs("3.9"))  # fmt: skip
    expect_close(o["per_class"], [3 / 4, 3 / 4, 2 / 4], "per-class accuracy", atol=1e-6,
                 docs=docs("3.9"))  # fmt: skip
    expect_close(o["accuracy"], 8 / 12, "accuracy", atol=1e-6, docs=docs("3.9"))
    expect_close(o["loss"], F.cross_entropy(logits, labels).item(), "mean loss per sample "
                 "(12 samples in batches of 5, 5 and 2)", atol=1e-5, hint="each batch's loss "
                 "weighs as many samples as it holds: the mean of the batch means gives the "
                 "batch of 2 the weight of 5", docs=docs("3.9"))  # fmt: skip
    expect(len(o["grad_enabled"]) > 0 and not any(o["grad_enabled"]),
           "gradients during evaluate", "disabled (no_grad)", "enabled", docs=docs("3.9"))  # fmt: skip


def _observe_evaluate_on_gpu(logits, batches):
    model = KnownPredictions(logits).cuda()
    devices: list = []
    _on_forward(model, lambda m, x: devices.append(x.device.type))
    result = train.evaluate(model, batches, num_classes=3)  # CPU batches, CUDA model
    cm = result.confusion_matrix
    cm = cm.cpu() if isinstance(cm, torch.Tensor) else cm
    return {"devices": devices, "confusion": np.asarray(cm).tolist()}


@pytest.mark.task("3.9", points=1)
@pytest.mark.gpu
def test_evaluate_moves_batches_to_the_models_device():
    logits, _, batches, confusion = known_fixture()
    o = observe(_observe_evaluate_on_gpu, logits, batches)
    expect(len(o["devices"]) > 0 and set(o["devices"]) == {"cuda"},
           "the device of each batch the model sees (CPU batches, model on the GPU)",
           "cuda, the model's device", o["devices"], hint="move each batch to the model's "
           "device (the device of its parameters) before the forward pass",
           docs=docs("3.9"))  # fmt: skip
    expect_equal(o["confusion"], confusion.tolist(), "confusion matrix with the model on the "
                 "GPU and the batches on the CPU", docs=docs("3.9"))  # fmt: skip


def _observe_evaluate_any(cases):
    seen = []
    for logits, batches, classes, loss in cases:
        model = KnownPredictions(logits)
        model.train()
        r = train.evaluate(model, batches, num_classes=classes, loss_fn=_loss_fn(loss))
        seen.append({"confusion": np.asarray(r.confusion_matrix).tolist(),
                     "per_class": np.asarray(r.per_class_accuracy, dtype=float),
                     "accuracy": float(r.accuracy), "loss": float(r.loss)})  # fmt: skip
    return seen


@st.composite
def _evaluation_case(draw):
    """Drawn labels (unbalanced, classes missing), logits, batch size and loss_fn."""
    classes, n = draw(st.integers(2, 6)), draw(st.integers(1, 20))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return classes, labels, 3 * torch.randn(n, classes, generator=g), draw(st.integers(1, 8)), draw(LOSS)


def _confusion_hint(got, want, default: str) -> str:
    """The hint for a wrong confusion matrix: what its numbers show went wrong."""
    try:
        g = np.asarray(got, dtype=np.int64)
    except (TypeError, ValueError):
        return default
    if g.shape == want.shape and not np.array_equal(want, want.T) and np.array_equal(g, want.T):
        return ("rows and columns are swapped: confusion_matrix[t, p] counts the samples of "
                "TRUE class t that were PREDICTED as p (rows: true class)")
    if g.shape == want.shape and g.sum() != want.sum():
        return (f"the matrix counts {g.sum()} samples, the loader holds {want.sum()}: "
                + default)  # fmt: skip
    return default


def expect_per_class(got, cm, what: str) -> None:
    """Per-class accuracy: the diagonal over the row sums, NaN where a class has no sample."""
    got, rows = np.asarray(got, dtype=np.float64), cm.sum(1)
    expect_equal(np.isnan(got).tolist() if got.shape == rows.shape else got.shape,
                 (rows == 0).tolist(), f"{what}: which classes have no accuracy (NaN)",
                 hint="a class with no sample has no accuracy: NaN, not 0 (and not an error)",
                 docs=docs("3.9"))  # fmt: skip
    expect_close(got[rows > 0], np.diag(cm)[rows > 0] / rows[rows > 0], f"{what}: per-class "
                 "accuracy of the classes that have samples", atol=1e-6, hint="each class's "
                 "correct predictions over ITS samples (a row of the confusion matrix)",
                 docs=docs("3.9"))  # fmt: skip


@pytest.mark.task("3.9", points=1)
@drawn(examples=10)
@given(cases=st.lists(_evaluation_case(), min_size=2, max_size=2))
def test_evaluate_on_drawn_labels_and_loss_fn(cases):
    args = []
    for classes, labels, logits, size, loss in cases:
        ids = torch.arange(len(labels)).float()[:, None, None, None]
        y = torch.tensor(labels)
        args.append((logits, [(ids[i : i + size], y[i : i + size]) for i in range(0, len(y), size)],
                     classes, loss))  # fmt: skip
    got = observed(_observe_evaluate_any, args, what="evaluate(model, loader, num_classes, "
                   "loss_fn) on drawn labels, logits and batch sizes", docs=docs("3.9"))  # fmt: skip
    for (classes, labels, logits, size, loss), (_, batches, _, _), o in zip(cases, args, got):
        y = torch.tensor(labels)
        what = (f"evaluate(model, {len(labels)} samples in batches of {size}, num_classes="
                f"{classes}, loss_fn={_loss_name(loss)}), labels {labels}, predicted "
                f"{logits.argmax(1).tolist()}")
        cm = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(cm, (y.numpy(), logits.argmax(1).numpy()), 1)
        expect_equal(o["confusion"], cm.tolist(), f"{what}: confusion matrix (rows: true class, "
                     "columns: predicted)", hint=_confusion_hint(o["confusion"], cm, "count "
                     "every sample of every batch, in a num_classes x num_classes matrix "
                     "whatever classes occur"), docs=docs("3.9"))  # fmt: skip
        expect_per_class(o["per_class"], cm, what)
        expect_close(o["accuracy"], np.trace(cm) / len(labels), f"{what}: accuracy", atol=1e-6,
                     hint="correct predictions over all samples (not the mean of the per-class "
                     "accuracies)", docs=docs("3.9"))  # fmt: skip
        loss_fn = _loss_fn(loss)
        want = sum(loss_fn(logits[_ids(x)], t).item() * len(t) for x, t in batches) / len(labels)
        expect_close(o["loss"], want, f"{what}: mean loss per sample", atol=1e-5, rtol=1e-5,
                     hint="the loss is loss_fn when one is given (cross-entropy only when it is "
                     "None); each batch's loss weighs as many samples as it holds",
                     docs=docs("3.9"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.10: fit
def _fit_fixture(epochs=4):
    """Validation holds the training images with shifted labels: as the model learns the
    training labels, validation accuracy FALLS, so the best validation epoch is an early one
    and the best training epoch a late one."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 3, 8, 8, generator=g)
    y = torch.arange(32) % 4
    train_batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    val_batches = [(x[i : i + 8], (y[i : i + 8] + 1) % 4) for i in range(0, 32, 8)]
    return train_batches, val_batches


@torch.no_grad()
def reference_validation(model, batches, loss_fn, autocast_dtype=None) -> tuple[float, float]:
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
        for x, y in batches:
            logits = model(x)
            loss += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    return loss / seen, correct / seen


def reference_fit(start, tr, va, epochs, make_optimizer, make_scheduler=None, *, classes=4,
                  loss=None, autocast=(None, None)) -> dict:
    """The reference ``fit``: per epoch every history field and the weights (``states``).
    ``autocast``: the dtypes the learner's training and evaluation forwards ran under."""
    model = tiny_from(start, classes)
    opt = make_optimizer(model)
    sched = make_scheduler(opt) if make_scheduler else None
    loss_fn = _loss_fn(loss) or nn.CrossEntropyLoss()
    h = {name: [] for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                               "states")}  # fmt: skip
    for _ in range(epochs):
        h["lr"].append(opt.param_groups[0]["lr"])
        train_loss, train_accuracy = reference_epoch(model, tr, opt, autocast[0], loss_fn)
        val_loss, val_accuracy = reference_validation(model, va, loss_fn, autocast[1])
        for name, v in zip(("train_loss", "train_accuracy", "val_loss", "val_accuracy"),
                           (train_loss, train_accuracy, val_loss, val_accuracy)):  # fmt: skip
            h[name].append(v)
        h["states"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if sched is not None:
            sched.step()
    return h


def _history(h) -> dict:
    out = {name: [float(v) for v in getattr(h, name)]
           for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")}  # fmt: skip
    out["best"] = [repr(getattr(h, name, None))[:60] for name in ("best_epoch", "best_val_accuracy")]
    epoch = getattr(h, "best_epoch", None)  # an int, numpy's too; not a float or a bool
    out["best_epoch"] = int(epoch) if isinstance(epoch, numbers.Integral) and not isinstance(
        epoch, bool) else None
    try:
        out["best_val_accuracy"] = float(getattr(h, "best_val_accuracy", None))
    except (TypeError, ValueError):
        out["best_val_accuracy"] = None
    return out


def expect_kept_epoch(h, best: int, val_accuracy: list, what: str = "history") -> None:
    """History.best_epoch (from 0) and History.best_val_accuracy name the epoch kept."""
    expect(h["best_epoch"] == best and h["best_val_accuracy"] is not None
           and abs(h["best_val_accuracy"] - val_accuracy[best]) <= 1e-6,
           f"{what}: (best_epoch, best_val_accuracy)",
           f"({best}, {val_accuracy[best]:.6g}): the epoch kept, counted from 0, and its "
           "validation accuracy", f"({h['best'][0]}, {h['best'][1]})",
           hint="set them each time validation accuracy improves (strictly)",
           docs=docs("3.10"))  # fmt: skip


def _observe_fit_best(start, tr, va):
    torch.manual_seed(0)
    model = tiny_from(start)
    autocast = _autocast_recorder(model, with_mode=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ckpt = os.path.join(tempfile.mkdtemp(), "best.pt")
    h = train.fit(model, tr, va, epochs=5, optimizer=opt, num_classes=4, checkpoint_path=ckpt)
    out = {"history": _history(h), "written": os.path.exists(ckpt), "final": model.state_dict(),
           "autocast": autocast}  # fmt: skip
    if out["written"]:
        try:
            saved = torch.load(ckpt, weights_only=True)
            out["saved_epoch"] = saved.get("epoch")
            out["saved_val_accuracy"] = saved.get("val_accuracy")
            out["saved_model"] = dict(saved["model"])
        except Exception as e:  # noqa: BLE001 - an unreadable checkpoint is the learner's
            # torch's message opens with advice on trusting the file; the cause is further on
            cause = re.search(r"(Unsupported global|Unsupported operand)[^\n]*", str(e))
            out["load_error"] = f"{type(e).__name__}: {cause[0] if cause else e}"[:300]
    return out


@pytest.mark.task("3.10", points=3)
def test_fit_keeps_the_best_validation_epoch():
    start = tiny_net(seed=1).state_dict()
    tr, va = _fit_fixture()
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=0.05)  # noqa: E731
    fp32 = reference_fit(start, tr, va, 5, adam)
    assert int(np.argmax(fp32["val_accuracy"])) != int(np.argmax(fp32["train_accuracy"])), (
        "fixture failed to separate train and val")
    o = observe(_observe_fit_best, start, tr, va)
    h = o["history"]
    dtypes = _fit_autocast(o["autocast"])  # the reference follows your autocast, if any
    ref = reference_fit(start, tr, va, 5, adam, autocast=dtypes) if any(dtypes) else fp32
    tol = _amp_tolerance(dtypes)
    best = int(np.argmax(ref["val_accuracy"]))
    expect_equal(len(h["val_accuracy"]), 5, "history: validation accuracies, one per epoch",
                 docs=docs("3.10"))  # fmt: skip
    expect_close(h["val_accuracy"], ref["val_accuracy"], "history.val_accuracy against the "
                 "reference fit (train, then evaluate on the validation loader, each epoch)",
                 atol=1e-6, docs=docs("3.10"))  # fmt: skip
    expect(o["written"], "checkpoint file", "written to checkpoint_path", "not written",
           docs=docs("3.10"))  # fmt: skip
    expect("load_error" not in o, "checkpoint file, read back with torch.load(weights_only="
           "True)", "a dict {'epoch', 'val_accuracy', 'model': model.state_dict()}",
           o.get("load_error"), hint="'epoch' and 'val_accuracy' as plain Python numbers "
           "(int(...), float(...)): weights_only=True refuses numpy scalars and other objects",
           docs=docs("3.10"))  # fmt: skip
    for name, q in ref["states"][best].items():
        p = o["saved_model"].get(name)
        expect(p is not None and p.shape == q.shape and torch.allclose(p, q, **tol),
               f"checkpoint['model']['{name}']",
               f"the weights after epoch {best} (counted from 0), the best validation "
               f"accuracy {[round(a, 3) for a in ref['val_accuracy']]}",
               "other weights (train accuracy per epoch: "
               f"{[round(a, 3) for a in h['train_accuracy']]})",
               hint="monitor VALIDATION accuracy, not training accuracy; save only when it "
                    "beats the best so far (strictly: the first best epoch is kept)",
               docs=docs("3.10"))  # fmt: skip
    expect(o["saved_epoch"] in (best, best + 1), "checkpoint['epoch'] for the weights of the "
           f"best epoch (index {best} counted from 0, as in range(epochs))",
           f"{best} (or {best + 1} if you count epochs from 1)", repr(o["saved_epoch"]),
           hint="'epoch' says which epoch the saved weights come from", docs=docs("3.10"))  # fmt: skip
    try:
        saved_acc = float(o["saved_val_accuracy"])
    except (TypeError, ValueError):
        saved_acc = None
    expect(saved_acc is not None and abs(saved_acc - ref["val_accuracy"][best]) <= 1e-6,
           "checkpoint['val_accuracy']", f"{ref['val_accuracy'][best]:.6g}: the validation "
           f"accuracy of the saved weights (epoch {best})", repr(o["saved_val_accuracy"]),
           hint="save the validation accuracy that made this epoch the best, as "
                "history.val_accuracy holds it", docs=docs("3.10"))  # fmt: skip
    for name, p in o["final"].items():
        expect(torch.equal(p, o["saved_model"].get(name, torch.empty(0))),
               f"after fit, model weights '{name}'", "the best checkpoint's (loaded back)",
               "other weights (the last epoch's?)", hint="keep a COPY of the best weights "
               "(copy.deepcopy(model.state_dict()), or each tensor cloned): state_dict() holds "
               "the live weights, which go on training", docs=docs("3.10"))  # fmt: skip
    expect_kept_epoch(h, best, ref["val_accuracy"])
    _, returned = reference_validation(tiny_from(o["final"]), va, nn.CrossEntropyLoss(), dtypes[1])
    expect_close(returned, h["val_accuracy"][best],
                 "validation accuracy of the returned model", atol=1e-6,
                 docs=docs("3.10"))  # fmt: skip


def _observe_fit_schedule(start, tr, va):
    torch.manual_seed(0)
    model = tiny_from(start)
    autocast = _autocast_recorder(model, with_mode=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    h = train.fit(model, tr, va, epochs=3, optimizer=opt, num_classes=4, scheduler=sched)
    return {**_history(h), "autocast": autocast}


@pytest.mark.task("3.10", points=2)
def test_fit_steps_the_schedule_once_per_epoch():
    start = tiny_net(seed=2).state_dict()
    tr, va = _fit_fixture()
    h = observe(_observe_fit_schedule, start, tr, va)
    expect_close(h["lr"], [0.1, 0.05, 0.025], "learning rate used in each epoch (StepLR, "
                 "gamma 0.5)", atol=1e-12, hint="the scheduler steps once per epoch, after the "
                 "epoch's training (not per batch, not before)", docs=docs("3.10"))  # fmt: skip
    for name in ("train_loss", "train_accuracy", "val_loss"):
        expect_equal(len(h[name]), 3, f"history.{name}: one entry per epoch",
                     docs=docs("3.10"))  # fmt: skip
    dtypes = _fit_autocast(h["autocast"])  # the reference follows your autocast, if any
    ref = reference_fit(start, tr, va, 3, lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
                        autocast=dtypes)  # fmt: skip
    expect_close(h["train_loss"], ref["train_loss"], "history.train_loss against the "
                 "reference fit with the same schedule", **_amp_tolerance(dtypes),
                 docs=docs("3.10"))  # fmt: skip
    expect(h["train_loss"][-1] < h["train_loss"][0], "training loss over 3 epochs",
           "falling", [round(v, 4) for v in h["train_loss"]], docs=docs("3.10"))  # fmt: skip


def _observe_fit_any(cases):
    seen = []
    for start, classes, tr, va, epochs, lr, momentum, schedule, loss in cases:
        torch.manual_seed(0)
        model = tiny_from(start, classes)
        autocast = _autocast_recorder(model, with_mode=True)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        sched = None if schedule is None else torch.optim.lr_scheduler.StepLR(opt, *schedule)
        calls: list = []  # (epoch, epochs in the history then) at each on_epoch_end call

        def on_epoch_end(epoch, history, calls=calls):
            calls.append((epoch, len(getattr(history, "val_accuracy", None) or [])))

        h = train.fit(model, tr, va, epochs=epochs, optimizer=opt, num_classes=classes,
                      scheduler=sched, loss_fn=_loss_fn(loss), on_epoch_end=on_epoch_end)  # fmt: skip
        seen.append({"history": _history(h), "final": model.state_dict(), "autocast": autocast,
                     "calls": [(int(e) if isinstance(e, numbers.Integral) else repr(e), n)
                               for e, n in calls]})  # fmt: skip
    return seen


FIELD_HINTS = {
    "train_loss": "the mean loss train_one_epoch returned for the epoch, with loss_fn",
    "train_accuracy": "the accuracy train_one_epoch returned (on the TRAINING batches), not the "
                      "validation accuracy",
    "val_loss": "the loss evaluate measured on val_loader (with loss_fn), not the training loss",
    "val_accuracy": "the accuracy evaluate measured on val_loader, after the epoch's training",
    "lr": "the learning rate the epoch trained with (read before the scheduler steps)",
}


@st.composite
def _fit_case(draw):
    classes = draw(st.integers(2, 5))
    schedule = draw(st.one_of(st.none(), st.tuples(st.integers(1, 2), st.floats(0.1, 0.9))))
    return (classes, draw(_batches(classes)), draw(_batches(classes)), draw(st.integers(2, 3)),
            draw(st.floats(1e-2, 0.3)), draw(st.floats(0.0, 0.9)), schedule, draw(LOSS),
            draw(st.integers(0, 100)))  # fmt: skip


@pytest.mark.task("3.10", points=1)
@drawn(examples=8)
@given(cases=st.lists(_fit_case(), min_size=2, max_size=2))
def test_fit_history_field_by_field(cases):
    starts = [tiny_net(case[-1], case[0]).state_dict() for case in cases]
    got = observed(_observe_fit_any, [(start, *case[:-1]) for start, case in zip(starts, cases)],
                   what="fit(model, train batches, val batches, epochs, SGD(lr, momentum), "
                   "num_classes, scheduler, loss_fn) with drawn data and settings",
                   docs=docs("3.10"))  # fmt: skip
    for start, case, o in zip(starts, cases, got):
        classes, tr, va, epochs, lr, momentum, schedule, loss, _ = case
        call = (f"fit({classes}-class model, train: {_sizes(tr)}; val: {_sizes(va)}; epochs="
                f"{epochs}, SGD(lr={lr:.4g}, momentum={momentum:.4g}), scheduler="
                f"{'None' if schedule is None else f'StepLR({schedule[0]}, {schedule[1]:.3g})'}, "
                f"loss_fn={_loss_name(loss)})")
        dtypes = _fit_autocast(o["autocast"])  # the reference follows your autocast, if any
        want = reference_fit(
            start, tr, va, epochs,
            lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum),  # noqa: B023
            None if schedule is None else lambda o: torch.optim.lr_scheduler.StepLR(o, *schedule),  # noqa: B023
            classes=classes, loss=loss, autocast=dtypes)  # fmt: skip
        tol = _amp_tolerance(dtypes)
        for name, hint in FIELD_HINTS.items():
            expect_close(o["history"][name], want[name], f"{call}: history.{name}, field by "
                         "field against the reference fit", **tol, hint=hint,
                         docs=docs("3.10"))  # fmt: skip
        best = int(np.argmax(want["val_accuracy"]))  # the first best: a tie keeps the earlier
        for name, q in want["states"][best].items():
            p = o["final"].get(name)
            expect(p is not None and p.shape == q.shape and torch.allclose(p, q, **tol),
                   f"{call}: after fit, model weights '{name}'",
                   f"the weights after epoch {best} (counted from 0), the first best "
                   f"validation accuracy {[round(a, 3) for a in want['val_accuracy']]}",
                   "other weights", hint="keep the best epoch by validation accuracy (strictly "
                   "better: a tie keeps the earlier) and put a copy of its weights back at the "
                   "end (state_dict() holds the live weights)",
                   docs=docs("3.10"))  # fmt: skip
        expect_kept_epoch(o["history"], best, want["val_accuracy"], f"{call}: history")
        first = o["calls"][0][0] if o["calls"] else 0
        expect(first in (0, 1) and o["calls"] == [(first + i, i + 1) for i in range(epochs)],
               f"{call}: on_epoch_end(epoch, history) calls, as (epoch, entries in "
               "history.val_accuracy at the call)",
               f"{epochs} calls, one at the end of each epoch: "
               f"{[(i, i + 1) for i in range(epochs)]} (epochs may count from 1)", o["calls"],
               hint="call on_epoch_end(epoch, history) once per epoch, after the epoch's "
               "entries are in the history", docs=docs("3.10"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.8, last: slowest
OVERFIT_STEPS = 4


def overfit_start(num_classes=4, seed=11) -> list:
    """Start weights for AlexNet(num_classes=4): N(0, 0.01) and the paper's bias constants."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(96, 3, 11, 11), (256, 96, 5, 5), (384, 256, 3, 3), (384, 384, 3, 3),
              (256, 384, 3, 3), (4096, 9216), (4096, 4096), (num_classes, 4096)]  # fmt: skip
    bias = [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    return [(torch.randn(s, generator=g) * 0.01, torch.full((s[0],), b)) for s, b in zip(shapes, bias)]


def reference_batchnorm_alexnet(x, layers, bns):
    """AlexNet(norm='batch', dropout=0) in training mode: conv -> ReLU -> BatchNorm (batch
    statistics) everywhere, max-pools after conv1, conv2, conv5; then the classifier."""

    def block(t, i, **conv):
        t = F.relu(F.conv2d(t, *layers[i], **conv))
        return F.batch_norm(t, None, None, *bns[i], training=True)

    t = F.max_pool2d(block(x, 0, stride=4), 3, 2)
    t = F.max_pool2d(block(t, 1, padding=2), 3, 2)
    t = F.max_pool2d(block(block(block(t, 2, padding=1), 3, padding=1), 4, padding=1), 3, 2)
    t = torch.flatten(F.adaptive_avg_pool2d(t, (6, 6)), 1)
    t = F.relu(F.linear(F.relu(F.linear(t, *layers[5])), *layers[6]))
    return F.linear(t, *layers[7])


def _weighted(module: nn.Module) -> list[nn.Module]:
    """The Conv2d layers of ``module``, then its Linear layers, each kind in module order."""
    found = list(module.modules())
    return [m for m in found if isinstance(m, nn.Conv2d)] + [m for m in found if isinstance(m, nn.Linear)]


def _observe_overfit(start, x, y, steps):
    model = alexnet.AlexNet(num_classes=4, norm="batch", dropout=0.0)
    layers = _weighted(model)
    shapes = [(tuple(m.weight.shape), None if m.bias is None else tuple(m.bias.shape)) for m in layers]
    if shapes != [(tuple(w.shape), tuple(b.shape)) for w, b in start]:
        return {"shapes": shapes}  # the test's start weights do not fit: nothing to train
    with torch.no_grad():
        for m, (w, b) in zip(layers, start):
            m.weight.copy_(w)
            m.bias.copy_(b)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    losses = [_numbers(train.train_one_epoch(model, [(x, y)], opt))[0] for _ in range(steps)]
    model.train()
    with torch.no_grad():
        logits = model(x)
    bns = [(m.weight, m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return {"shapes": shapes, "losses": losses, "layers": [(m.weight, m.bias) for m in layers],
            "bns": bns, "logits": logits}  # fmt: skip


@pytest.mark.task("3.8", points=2)
def test_train_one_epoch_overfits_a_small_batch():
    """The classic sanity check: AlexNet must memorise 8 images."""
    start = overfit_start()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 67, 67, generator=g), torch.arange(8) % 4
    o = observed(_observe_overfit, start, x, y, OVERFIT_STEPS, what="AlexNet(num_classes=4, "
                 f"norm='batch', dropout=0.0), this test's start weights loaded, then "
                 f"{OVERFIT_STEPS} calls of train_one_epoch on one batch of 8 images",
                 docs=docs("3.8"))  # fmt: skip
    expect_equal(o["shapes"], [(tuple(w.shape), tuple(b.shape)) for w, b in start],
                 "AlexNet(num_classes=4, norm='batch'): (weight, bias) shapes per layer, Conv2d "
                 "layers first, then Linear layers (where this test loads its start weights)",
                 hint="nn.Conv2d and nn.Linear layers with the paper's shapes, each with a bias",
                 docs=docs("3.6"))  # fmt: skip
    with torch.no_grad():
        unit = [(torch.ones(c), torch.zeros(c)) for c in (96, 256, 384, 384, 256)]
        first = F.cross_entropy(reference_batchnorm_alexnet(x, start, unit), y).item()
        ref_logits = reference_batchnorm_alexnet(x, o["layers"], o["bns"])
    losses = o["losses"]
    expect_close(losses[0], first, "the first loss train_one_epoch reported (before any "
                 "update, from the weights this test loaded)", atol=1e-3, rtol=1e-3,
                 docs=docs("3.8"))  # fmt: skip
    expect_close(o["logits"], ref_logits, "AlexNet(norm='batch', dropout=0) in training mode "
                 "against conv -> ReLU -> BatchNorm2d (+ max-pool) and the classifier, with your "
                 "trained weights", atol=1e-3, rtol=1e-3, docs=docs("3.6"))  # fmt: skip
    last = F.cross_entropy(ref_logits, y).item()
    expect(last < 0.5 * first, f"loss after {OVERFIT_STEPS} steps on one batch of 8 (from "
           "your trained weights)", f"< half of the first ({first:.3f})", f"{last:.3f} "
           f"(reported per step: {[round(v, 3) for v in losses]})", docs=docs("3.8"))  # fmt: skip
    accuracy = (ref_logits.argmax(1) == y).float().mean().item()
    expect_equal(accuracy, 1.0, "accuracy on the memorised batch", docs=docs("3.8"))
