"""Graded tests for lesson 02: a pretrained AlexNet from torchvision (tasks 2.1 - 2.5).

Offline by design: the tests write a weights file of the right shapes (random values, made
here) into a temporary TORCH_HOME under the weights' own file name, so torchvision's real
loading path runs without a network.
"""

import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal

pretrained = learner.load(__file__, "pretrained")
DOCS = "docs/lessons/02_torch_pretrained.md"
FILE = "alexnet-owt-7be5be79.pth"  # AlexNet_Weights.IMAGENET1K_V1's file name


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def count(model, trainable=None):
    return sum(p.numel() for p in model.parameters()
               if trainable is None or p.requires_grad == trainable)  # fmt: skip


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a random AlexNet state dict under the real name."""
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.alexnet().state_dict()
    torch.save(state, ckpt / FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        yield state


@pytest.fixture(scope="module")
def model(fake_weights):
    return pretrained.build_model(num_classes=10)


@pytest.mark.task("2.1", points=3)
def test_build_model_loads_the_weights_and_replaces_the_head(fake_weights):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = pretrained.build_model(num_classes=10)
    deprecated = [str(w.message) for w in caught if "pretrained" in str(w.message)]
    expect(not deprecated, "deprecation warnings", "none (use weights=AlexNet_Weights...)",
           deprecated[:1], docs=docs("2.1"))  # fmt: skip
    head = m.classifier[6]
    expect(isinstance(head, nn.Linear) and head.out_features == 10 and head.in_features == 4096,
           "model.classifier[6]", "Linear(4096, 10)", repr(head), docs=docs("2.1"))
    expect_equal(count(m), 57_044_810, "total parameters with a 10-class head",
                 docs=docs("2.1"))  # fmt: skip
    for name in ("features.0.weight", "features.10.bias", "classifier.1.weight"):
        expect(torch.equal(m.state_dict()[name], fake_weights[name]), f"{name} after loading",
               "the cached pretrained values", "different values: were the weights loaded?",
               docs=docs("2.1"))  # fmt: skip
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expect_equal(tuple(m.eval()(x).shape), (2, 10), "output shape on (2, 3, 224, 224)",
                 docs=docs("2.1"))  # fmt: skip


@pytest.mark.task("2.1", points=1)
def test_build_model_without_cached_weights_and_network(tmp_path, monkeypatch):
    from alexnet_course import CourseError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CourseError) as e:
        pretrained.build_model(num_classes=10)
    msg = str(e.value)
    expect(FILE in msg and str(tmp_path) in msg and "\n" not in msg, "the error without "
           "weights and network", "one line naming the file and where to put it", msg,
           docs=docs("2.1"))  # fmt: skip


@pytest.mark.task("2.2", points=3)
def test_feature_extraction_and_finetune_modes(model):
    pretrained.set_mode(model, "feature_extraction")
    expect_equal(count(model, trainable=True), 54_575_114, "trainable parameters with "
                 "frozen features", docs=docs("2.2"))  # fmt: skip
    expect_equal(count(model, trainable=False), 2_469_696, "frozen parameters (the features)",
                 docs=docs("2.2"))  # fmt: skip
    expect(all(p.requires_grad for p in model.classifier.parameters()), "classifier "
           "parameters", "trainable", "some frozen", docs=docs("2.2"))  # fmt: skip
    pretrained.set_mode(model, "finetune")
    expect_equal(count(model, trainable=False), 0, "frozen parameters when fine-tuning",
                 docs=docs("2.2"))  # fmt: skip
    pretrained.set_mode(model, "feature_extraction")
    with pytest.raises(ValueError):
        pretrained.set_mode(model, "freeze_all")


@pytest.mark.task("2.3", points=2)
def test_preprocessing_is_the_weights_own():
    p = pretrained.preprocessing()
    expect_close(p["mean"], (0.485, 0.456, 0.406), "ImageNet mean", atol=1e-6,
                 hint="read it from AlexNet_Weights.IMAGENET1K_V1.transforms()",
                 docs=docs("2.3"))  # fmt: skip
    expect_close(p["std"], (0.229, 0.224, 0.225), "ImageNet std", atol=1e-6, docs=docs("2.3"))
    expect_equal(p["size"], 224, "input size (crop)", docs=docs("2.3"))


@pytest.mark.task("2.4", points=3)
def test_two_parameter_groups(model):
    for mode, groups in (("feature_extraction", 2), ("finetune", 2)):
        pretrained.set_mode(model, mode)
        opt = pretrained.make_optimizer(model, lr=1e-2, backbone_lr=1e-3)
        lrs = [g["lr"] for g in opt.param_groups]
        expect_equal(lrs, [1e-2, 1e-3][:groups], f"{mode}: learning rate per group (head, "
                     "pretrained layers)", docs=docs("2.4"))  # fmt: skip
        in_groups = [p for g in opt.param_groups for p in g["params"]]
        ids = [id(p) for p in in_groups]
        want = {id(p) for p in model.parameters() if p.requires_grad}
        expect(len(ids) == len(set(ids)) and set(ids) == want, f"{mode}: parameters in the "
               "optimizer", "every trainable parameter once, no frozen one",
               f"{len(ids)} entries for {len(want)} trainable parameters", docs=docs("2.4"))
        head = {id(p) for p in model.classifier[6].parameters()}
        expect_equal({id(p) for p in opt.param_groups[0]["params"]}, head, "group 0 holds the "
                     "new head (classifier[6]) only", docs=docs("2.4"))  # fmt: skip
    pretrained.set_mode(model, "feature_extraction")


@pytest.mark.task("2.5", points=3)
def test_finetune_trains_the_head_and_keeps_frozen_features(fake_weights):
    m = pretrained.build_model(num_classes=4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 64, 64, generator=g), torch.arange(8) % 4
    feats = {k: v.clone() for k, v in m.features.state_dict().items()}
    head = m.classifier[6].weight.detach().clone()
    m.eval()
    opt = pretrained.make_optimizer(m, lr=1e-2, backbone_lr=1e-3)
    losses = pretrained.finetune(m, [(x, y)], epochs=8, optimizer=opt, device="cpu")
    expect_equal(len(losses), 8, "finetune returns one loss per epoch", docs=docs("2.5"))
    expect(losses[-1] < losses[0], "training loss", "falling", [round(v, 3) for v in losses],
           docs=docs("2.5"))  # fmt: skip
    expect(all(torch.equal(v, m.features.state_dict()[k]) for k, v in feats.items()),
           "frozen features after finetune", "unchanged", "changed", docs=docs("2.5"))
    expect(not torch.equal(head, m.classifier[6].weight), "the new head after finetune",
           "trained", "unchanged", docs=docs("2.5"))  # fmt: skip
    expect(m.training, "model mode during finetune", "training", "eval", docs=docs("2.5"))


@pytest.mark.task("2.5", points=2)
def test_finetune_matches_a_reference_loop(fake_weights):
    import copy

    m = pretrained.build_model(num_classes=4)
    for layer in m.classifier:
        if isinstance(layer, nn.Dropout):
            layer.p = 0.0  # no randomness: the two runs must agree exactly
    ref = copy.deepcopy(m)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 64, 64, generator=g), torch.arange(4)) for _ in range(2)]
    opt = torch.optim.SGD(m.classifier[6].parameters(), lr=0.05, momentum=0.9)
    losses = pretrained.finetune(m, batches, epochs=2, optimizer=opt, device="cpu")
    ref_opt = torch.optim.SGD(ref.classifier[6].parameters(), lr=0.05, momentum=0.9)
    ref_losses = []
    for _ in range(2):
        total = 0.0
        for x, y in batches:
            ref_opt.zero_grad()
            loss = nn.functional.cross_entropy(ref(x), y)
            loss.backward()
            ref_opt.step()
            total += loss.item() * len(y)
        ref_losses.append(total / 8)
    expect_close(losses, ref_losses, "finetune: mean loss per epoch against the reference "
                 "loop", atol=1e-4, rtol=1e-4, docs=docs("2.5"))  # fmt: skip
    expect_close(m.classifier[6].weight, ref.classifier[6].weight, "finetune: head weights "
                 "after 2 epochs against the reference loop", atol=1e-5, rtol=1e-4,
                 hint="each step: zero_grad, forward, loss, backward, step", docs=docs("2.5"))


@pytest.mark.task("2.5", points=1)
@pytest.mark.gpu
def test_finetune_moves_the_model_to_the_device(fake_weights):
    m = pretrained.build_model(num_classes=4)
    opt = pretrained.make_optimizer(m)
    batch = [(torch.randn(4, 3, 64, 64), torch.arange(4))]
    pretrained.finetune(m, batch, epochs=1, optimizer=opt, device="cuda")
    expect_equal(next(m.parameters()).device.type, "cuda", "model device after finetune",
                 docs=docs("2.5"))  # fmt: skip
