"""Graded tests for lesson 03, part 2: the training loop (tasks 3.8 - 3.10).

Graded by behaviour: your loop must update the weights exactly as the reference loop written
out here does, your metrics must equal hand-computed values over every sample, and your
``fit`` must keep the epoch with the best VALIDATION accuracy.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_course.device import seed_everything
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal

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


def fixed_batches(n_batches=3, size=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n_batches)]  # fmt: skip


def reference_epoch(model, batches, optimizer):
    model.train()
    losses, correct, seen = 0.0, 0, 0
    for x, y in batches:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        losses += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return losses / seen, correct / seen


# ---------------------------------------------------------------- Task 3.8: train_one_epoch
@pytest.mark.task("3.8", points=3)
def test_train_one_epoch_matches_reference_loop():
    batches = fixed_batches()
    ours, ref = tiny_net(), tiny_net()
    ours.eval()  # your function must switch to training mode itself
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    got = train.train_one_epoch(ours, batches, opt_ours, nn.CrossEntropyLoss())
    want = reference_epoch(ref, batches, opt_ref)
    expect(isinstance(got, tuple) and len(got) == 2, "train_one_epoch returns",
           "(mean loss, accuracy)", repr(got), docs=docs("3.8"))  # fmt: skip
    expect_close(np.array(got, dtype=float), np.array(want), "train_one_epoch (mean loss per "
                 "sample, accuracy) against the reference loop", atol=1e-5,
                 hint="loss_fn(logits, labels) on the raw logits; weight each batch's loss "
                      "by its size", docs=docs("3.8"))  # fmt: skip
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        expect_close(p, q, f"weights '{name}' after one epoch, against the reference loop",
                     atol=1e-5, rtol=1e-4,
                     hint="each step: zero_grad, forward (training mode), loss, backward, "
                          "step", docs=docs("3.8"))  # fmt: skip
    expect(ours.training, "the model's mode after train_one_epoch", "training", "eval",
           docs=docs("3.8"))  # fmt: skip


@pytest.mark.task("3.8", points=1)
@pytest.mark.gpu
def test_train_one_epoch_moves_batches_to_the_models_device():
    model = tiny_net().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train.train_one_epoch(model, fixed_batches(), opt)  # CPU batches, CUDA model


# ---------------------------------------------------------------- Task 3.9: evaluate
class KnownPredictions(nn.Module):
    """Returns fixed logits per sample id (carried in the input); noise in training mode and
    it records whether gradients were enabled."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(logits.clone(), requires_grad=False)
        self.grad_enabled: list[bool] = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        out = self.table[x[:, 0].long()]
        if self.training:
            out = out + 100 * torch.randn_like(out)
        return out


def known_fixture():
    # 12 samples in batches of 5, 5, 2; 3 classes; predictions chosen by hand
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    preds = torch.tensor([0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1])
    logits = F.one_hot(preds, 3).float() * 5.0
    ids = torch.arange(12).float()[:, None]
    batches = [(ids[s], labels[s]) for s in (slice(0, 5), slice(5, 10), slice(10, 12))]
    # by hand: class 0 -> predicted 0,0,1,0 ; class 1 -> 1,2,1,1 ; class 2 -> 2,2,0,1
    confusion = np.array([[3, 1, 0], [0, 3, 1], [1, 1, 2]])
    return logits, labels, batches, confusion


@pytest.mark.task("3.9", points=3)
def test_evaluate_counts_every_sample():
    logits, labels, batches, confusion = known_fixture()
    model = KnownPredictions(logits)
    model.train()  # evaluate must switch to eval mode itself
    result = train.evaluate(model, batches, num_classes=3)
    expect_equal(np.asarray(result.confusion_matrix).tolist(), confusion.tolist(),
                 "confusion matrix (rows: true class, columns: predicted class) over all 12 "
                 "samples", hint="count every sample of every batch, not a subset",
                 docs=docs("3.9"))  # fmt: skip
    expect_close(result.per_class_accuracy, [3 / 4, 3 / 4, 2 / 4], "per-class accuracy",
                 atol=1e-9, docs=docs("3.9"))  # fmt: skip
    expect_close(result.accuracy, 8 / 12, "accuracy", atol=1e-9, docs=docs("3.9"))
    expect_close(result.loss, F.cross_entropy(logits, labels).item(), "mean loss per sample",
                 atol=1e-5, docs=docs("3.9"))  # fmt: skip
    expect(not any(model.grad_enabled), "gradients during evaluate", "disabled (no_grad)",
           "enabled", docs=docs("3.9"))  # fmt: skip


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


@pytest.mark.task("3.10", points=3)
def test_fit_keeps_the_best_validation_epoch(tmp_path):
    torch.manual_seed(0)
    model = tiny_net(seed=1)
    tr, va = _fit_fixture()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ckpt = tmp_path / "best.pt"
    h = train.fit(model, tr, va, epochs=5, optimizer=opt, num_classes=4, checkpoint_path=ckpt)
    expect_equal(len(h.val_accuracy), 5, "history: validation accuracies, one per epoch",
                 docs=docs("3.10"))  # fmt: skip
    best = int(np.argmax(h.val_accuracy))
    assert best != int(np.argmax(h.train_accuracy)), "fixture failed to separate train and val"
    expect(ckpt.exists(), "checkpoint file", str(ckpt), "not written", docs=docs("3.10"))
    saved = torch.load(ckpt, weights_only=True)
    expect_equal(saved.get("epoch"), best, "epoch of the saved checkpoint (history val "
                 f"accuracy {[round(a, 3) for a in h.val_accuracy]}, train accuracy "
                 f"{[round(a, 3) for a in h.train_accuracy]})",
                 hint="monitor VALIDATION accuracy, not training accuracy",
                 docs=docs("3.10"))  # fmt: skip
    check = copy.deepcopy(model)
    check.load_state_dict(saved["model"])
    for (name, p), q in zip(model.state_dict().items(), check.state_dict().values()):
        expect(torch.equal(p, q), f"after fit, model weights '{name}'",
               "the best checkpoint's (loaded back)", "the last epoch's", docs=docs("3.10"))
    again = train.evaluate(model, va, num_classes=4)
    expect_close(again.accuracy, h.val_accuracy[best], "validation accuracy of the returned "
                 "model", atol=1e-9, docs=docs("3.10"))  # fmt: skip


@pytest.mark.task("3.10", points=2)
def test_fit_steps_the_schedule_once_per_epoch():
    torch.manual_seed(0)
    model = tiny_net(seed=2)
    tr, va = _fit_fixture()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    h = train.fit(model, tr, va, epochs=3, optimizer=opt, num_classes=4, scheduler=sched)
    expect_close(h.lr, [0.1, 0.05, 0.025], "learning rate used in each epoch (StepLR, gamma "
                 "0.5)", atol=1e-12, hint="call scheduler.step() once per epoch, after the "
                 "epoch", docs=docs("3.10"))  # fmt: skip
    for name in ("train_loss", "train_accuracy", "val_loss"):
        expect_equal(len(getattr(h, name)), 3, f"history.{name}: one entry per epoch",
                     docs=docs("3.10"))  # fmt: skip
    expect(h.train_loss[-1] < h.train_loss[0], "training loss over 3 epochs", "falling",
           [round(v, 4) for v in h.train_loss], docs=docs("3.10"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.8, last: slowest
@pytest.mark.task("3.8", points=2)
def test_train_one_epoch_overfits_a_small_batch():
    """The classic sanity check: AlexNet must memorise 8 images."""
    seed_everything(0)
    model = alexnet.AlexNet(num_classes=4, norm="batch", dropout=0.0)
    g = torch.Generator().manual_seed(1)
    batch = [(torch.randn(8, 3, 67, 67, generator=g), torch.arange(8) % 4)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses, accs = [], []
    for _ in range(15):
        loss, acc = train.train_one_epoch(model, batch, opt)
        losses.append(loss)
        accs.append(acc)
    expect(losses[-1] < 0.5 * losses[0], "loss after 15 steps on one batch of 8",
           f"< half of the first ({losses[0]:.3f})", f"{losses[-1]:.3f} (all: "
           f"{[round(v, 3) for v in losses]})", docs=docs("3.8"))  # fmt: skip
    expect_equal(accs[-1], 1.0, "accuracy on the memorised batch", docs=docs("3.8"))
