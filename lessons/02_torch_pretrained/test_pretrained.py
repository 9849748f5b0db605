"""Graded tests for lesson 02: a pretrained AlexNet from torchvision (tasks 2.1 - 2.5).

Offline by design: the tests write a weights file of the right shapes (seeded values, made
by :func:`_fake_state`) into a temporary TORCH_HOME under the weights' own file name, so
torchvision's real loading path runs without a network.

Each test has two halves: an ``_observe_*`` function that calls your code and returns data
only (weights, flags, losses, outputs), and the test itself, which checks that data against
what it computes on its own (the same seeded weights, torchvision's AlexNet, a reference
training loop).
"""

import contextlib
import functools
import math
import os
import shutil
import tempfile
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from alexnet_course.grading import learner
from alexnet_course.grading.checks import (
    expect,
    expect_close,
    expect_equal,
    expect_raises,
    observed,
)
from alexnet_course.grading.draws import drawn
from alexnet_course.grading.remote import observe

pretrained = learner.load(__file__, "pretrained")
DOCS = "docs/lessons/02_torch_pretrained.md"
FILE = "alexnet-owt-7be5be79.pth"  # AlexNet_Weights.IMAGENET1K_V1's file name
SEED = 123  # the fake ImageNet weights
HEAD = ("classifier.6.weight", "classifier.6.bias")
# the page's trap of task 2.4: `in` / `==` on tensors compare values elementwise
TENSOR_COMPARED = (r"must match the size of tensor|Boolean value of Tensor with more than one",
                   "`in` on a list of tensors (and `==`) compares VALUES elementwise: two "
                   "parameters of different shapes cannot be compared, and equal values are "
                   "not the same parameter; tell parameters apart by identity (the page's "
                   "trap)")  # fmt: skip
# the page's trap of task 2.5: the loader is any iterable of batches
LOADER_ONLY_ITERATED = (r"has no attribute 'dataset'|has no attribute 'batch_size'|has no len",
                        "`loader` is any iterable of (images, labels) batches (this test passes "
                        "a plain list): iterate over it, and count the samples as the batches "
                        "go by (a DataLoader's dataset can hold more than an epoch sees)")  # fmt: skip


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


# ---------------------------------------------------------------- the test's own material
@functools.lru_cache(maxsize=2)
def _fake_items(seed: int) -> tuple:
    import torchvision

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in torchvision.models.alexnet().state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    items = []
    for name, shape in shapes.items():
        fan_in = math.prod(shapes[name.replace(".bias", ".weight")][1:])
        bound = 1 / math.sqrt(fan_in)  # the scale of PyTorch's default initialisation
        if len(shape) == 2 and math.prod(shape) > 1_000_000:
            # W[i, j] = row[i + j]: one short row viewed as the whole matrix, so the file
            # torch.save writes is 10 MB instead of 233 MB (loading copies it out in full)
            row = (2 * torch.rand(shape[0] + shape[1] - 1, generator=g) - 1) * bound
            items.append((name, row.as_strided(shape, (1, 1))))
        else:
            items.append((name, (2 * torch.rand(shape, generator=g) - 1) * bound))
    return tuple(items)


def _fake_state(seed: int = SEED) -> dict:
    """A state dict with AlexNet_Weights.IMAGENET1K_V1's names and shapes and seeded values:
    the "pretrained" weights the tests put in the cache (never modify its tensors)."""
    return dict(_fake_items(seed))


def _head(seed: int, num_classes: int) -> dict:
    """Seeded start values for a new ``num_classes`` head (``classifier.6``)."""
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(4096)
    return {"classifier.6.weight": (2 * torch.rand(num_classes, 4096, generator=g) - 1) * bound,
            "classifier.6.bias": (2 * torch.rand(num_classes, generator=g) - 1) * bound}  # fmt: skip


def _alexnet(num_classes: int, state: dict | None = None) -> nn.Module:
    """torchvision's AlexNet (no time spent on a random initialisation), loaded with
    ``state`` when given (copied, never aliased)."""
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.alexnet(num_classes=num_classes)
    model = model.to_empty(device="cpu")
    if state is not None:
        model.load_state_dict(state)
    return model


def _start(seed: int, head: dict) -> nn.Module:
    """The fine-tuning tests' start: the fake pretrained weights and a given new head."""
    state = {k: v for k, v in _fake_state(seed).items() if k not in HEAD}
    return _alexnet(len(head["classifier.6.bias"]), {**state, **head})


def _freeze_features(model: nn.Module) -> None:
    """The feature-extraction setting, made here (not with your set_mode)."""
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("features."))


@contextlib.contextmanager
def _torch_home(state: dict | None):
    """A temporary TORCH_HOME, its hub cache holding ``state`` under the weights' real file
    name (nothing when ``state`` is None); removed afterwards, the environment restored."""
    home = tempfile.mkdtemp(prefix="torch_home-")
    old = os.environ.get("TORCH_HOME")
    try:
        if state is not None:
            ckpt = Path(home) / "hub" / "checkpoints"
            ckpt.mkdir(parents=True)
            torch.save(state, ckpt / FILE)
        os.environ["TORCH_HOME"] = home
        yield home
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)


def _flags(model: nn.Module) -> dict:
    return {name: bool(p.requires_grad) for name, p in model.named_parameters()}


def _numels(model: nn.Module) -> dict:
    return {name: p.numel() for name, p in model.named_parameters()}


def _count(numels: dict, flags: dict, trainable: bool) -> int:
    return sum(n for name, n in numels.items() if flags.get(name) == trainable)


# ---------------------------------------------------------------- task 2.1
def _observe_build(seed, head, x):
    with _torch_home(_fake_state(seed)), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = pretrained.build_model()  # the defaults: num_classes=10, mode="feature_extraction"
    layer = m.classifier[6]
    out = {"warnings": [str(w.message) for w in caught], "flags": _flags(m),
           "head": {"linear": isinstance(layer, nn.Linear), "repr": repr(layer)[:200]},
           "params": {name: p.detach().clone() if name in HEAD else p.detach()
                      for name, p in m.named_parameters()}}  # fmt: skip
    if isinstance(layer, nn.Linear) and layer.bias is not None and tuple(layer.weight.shape) == (10, 4096):
        with torch.no_grad():  # the test's values in the new head: the output is then known
            layer.weight.copy_(head["classifier.6.weight"])
            layer.bias.copy_(head["classifier.6.bias"])
        m.eval()
        with torch.no_grad():
            out["out"] = m(x)
    return out


@pytest.mark.task("2.1", points=3)
def test_build_model_loads_the_weights_and_replaces_the_head():
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    head = _head(5, 10)
    o = observe(_observe_build, SEED, head, x)
    deprecated = [w for w in o["warnings"] if "pretrained" in w]
    expect(not deprecated, "deprecation warnings", "none", deprecated[:1],
           hint="pretrained=True is torchvision's deprecated API: its model builders now take "
           "a weights enum (the page's Look up)", docs=docs("2.1"))  # fmt: skip
    params = o["params"]
    shape = tuple(params["classifier.6.weight"].shape) if "classifier.6.weight" in params else None
    expect(o["head"]["linear"] and shape == (10, 4096) and "classifier.6.bias" in params,
           "build_model() (default num_classes=10): model.classifier[6]", "Linear(4096, 10)",
           o["head"]["repr"],
           hint="the last layer must map the 4096 features to num_classes outputs: ImageNet's "
           "has 1000, and asking torchvision for 10 classes cannot load the weights (the "
           "page's Traps)", docs=docs("2.1"))  # fmt: skip
    expect_equal(sum(p.numel() for p in params.values()), 57_044_810, "total parameters with a "
                 "10-class head", hint="torchvision's 61,100,840, less the 1000-class head "
                 "(4,097,000), plus a 10-class one (40,970)", docs=docs("2.1"))  # fmt: skip
    fake = _fake_state(SEED)
    expect_equal(sorted(params), sorted(fake), "parameter names (torchvision's AlexNet)",
                 hint="return torchvision's AlexNet itself, with no layer added or removed",
                 docs=docs("2.1"))  # fmt: skip
    for name, value in fake.items():
        if name not in HEAD:
            expect(torch.equal(params[name], value), f"{name} after loading",
                   "the cached pretrained values", "different values: were the weights loaded?",
                   hint="a model built without weights starts from random values; the "
                   "ImageNet values come with the weights enum (the page's Traps)",
                   docs=docs("2.1"))  # fmt: skip
    frozen = sorted(n for n, f in o["flags"].items() if not f)
    expect_equal(frozen, sorted(n for n in fake if n.startswith("features.")), "build_model() "
                 "(mode: its default, 'feature_extraction'): the frozen parameters", hint="build_model sets the mode it is given with set_mode",
                 docs=docs("2.1"))  # fmt: skip
    expect_equal(tuple(o["out"].shape), (2, 10), "output shape on (2, 3, 224, 224)",
                 hint="one logit per class: the new head's out_features is num_classes",
                 docs=docs("2.1"))  # fmt: skip
    with torch.no_grad():
        want = _start(SEED, head).eval()(x)
    expect_close(o["out"], want, "output in eval mode, this test's values put in your new head, "
                 "against torchvision's AlexNet with the cached pretrained weights and the same "
                 "head", atol=1e-4, rtol=1e-4,
                 hint="return torchvision's alexnet itself, only classifier[6] replaced",
                 docs=docs("2.1"))  # fmt: skip


# drawn: any number of classes but 10 (a head written for CIFAR-10 passes the test above), both modes
CLASSES = st.integers(1, 40).filter(lambda k: k != 10)


def _observe_build_any(seed, cases, x):
    """``build_model(num_classes, mode)`` for each case: its new head's shapes, the
    trainable flags, and (this test's values put in a head of the right shape) the output."""
    seen = []
    with _torch_home(_fake_state(seed)):
        for num_classes, mode, head in cases:
            m = pretrained.build_model(num_classes=num_classes, mode=mode)
            o = {"repr": repr(m.classifier[6])[:200], "flags": _flags(m),
                 "shapes": {n: tuple(p.shape) for n, p in m.named_parameters() if n in HEAD}}  # fmt: skip
            if o["shapes"] == {n: tuple(v.shape) for n, v in head.items()}:
                with torch.no_grad():
                    m.classifier[6].weight.copy_(head["classifier.6.weight"])
                    m.classifier[6].bias.copy_(head["classifier.6.bias"])
                m.eval()
                with torch.no_grad():
                    o["out"] = m(x)
            seen.append(o)
            del m
    return seen


@pytest.mark.task("2.1", points=1)
@drawn(examples=1)  # a build takes a second: one a draw (the test above builds the default mode)
@given(num_classes=CLASSES, seed=st.integers(0, 2**16))
def test_build_model_any_number_of_classes_and_mode(num_classes, seed):
    cases = [(num_classes, "finetune")]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    heads = [_head(seed + i, k) for i, (k, _) in enumerate(cases)]
    calls = ", ".join(f"build_model(num_classes={k}, mode={mode!r})" for k, mode in cases)
    got = observed(_observe_build_any, SEED, [(k, mode, h) for (k, mode), h in zip(cases, heads)],
                   x, what=calls, docs=docs("2.1"))  # fmt: skip
    for (k, mode), _h, o in zip(cases, heads, got):
        call = f"build_model(num_classes={k}, mode={mode!r})"
        expect_equal(o["shapes"], {"classifier.6.weight": (k, 4096), "classifier.6.bias": (k,)},
                     f"{call}: shapes of the new head's weight and bias (classifier[6] is "
                     f"{o['repr']})", hint="the new last layer has num_classes outputs: the "
                     "argument's value, whatever it is (10 is only CIFAR-10's)",
                     docs=docs("2.1"))  # fmt: skip
        frozen = sorted(n for n, f in o["flags"].items() if not f)
        want = sorted(n for n in _fake_state(SEED) if mode == "feature_extraction"
                      and n.startswith("features."))  # fmt: skip
        expect_equal(frozen, want, f"{call}: the frozen parameters", hint="build_model sets "
                     "the mode it is given (with set_mode), not always the default",
                     docs=docs("2.1"))  # fmt: skip
        # (the output's values are checked for 10 classes above: here, that the head is used)
        expect_equal(tuple(o["out"].shape), (2, k), f"{call}: output shape on two 64 px images",
                     hint="one logit per class: the new head's out_features is num_classes",
                     docs=docs("2.1"))  # fmt: skip


def _observe_offline():
    from alexnet_course import CourseError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    real = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = offline
    try:
        with _torch_home(None) as home:
            try:
                pretrained.build_model(num_classes=10)
            except NotImplementedError:
                raise
            except Exception as e:  # noqa: BLE001 - the test reads which error came
                return {"home": home, "raised": type(e).__name__, "message": str(e)[:2000],
                        "course_error": isinstance(e, CourseError)}  # fmt: skip
            return {"home": home, "raised": None}
    finally:
        torch.hub.download_url_to_file = real


@pytest.mark.task("2.1", points=1)
def test_build_model_without_cached_weights_and_network():
    o = observe(_observe_offline)
    got = "returned a model" if o["raised"] is None else f"{o['raised']}: {o['message'][:300]}"
    expect(o["raised"] is not None and o["course_error"], "build_model without cached weights "
           "and without a network", "the course's WeightsError (a CourseError)", got,
           hint="torchvision's own loader raises a download error here; the course's "
           "ensure_weights makes the one-line WeightsError, before anything is loaded",
           docs=docs("2.1"))  # fmt: skip
    msg = o["message"]
    expect(FILE in msg and o["home"] in msg and "\n" not in msg, "the error without "
           "weights and network", "one line naming the file and where to put it", msg,
           hint="let ensure_weights' WeightsError through as it is", docs=docs("2.1"))  # fmt: skip


# ---------------------------------------------------------------- task 2.2
def _observe_modes(modes):
    m = _alexnet(10)
    seen = []
    for mode in modes:
        pretrained.set_mode(m, mode)
        seen.append(_flags(m))
    return {"numels": _numels(m), "flags": seen}


def _observe_bad_mode(mode):
    m = _alexnet(10)
    pretrained.set_mode(m, mode)
    return _flags(m)


@pytest.mark.task("2.2", points=3)
def test_feature_extraction_and_finetune_modes():
    o = observe(_observe_modes, ["feature_extraction", "finetune", "feature_extraction"])
    numels, (fe, ft, fe_again) = o["numels"], o["flags"]
    for flags, when in ((fe, ""), (fe_again, " (after finetune)")):
        hint = "feature extraction: requires_grad False on model.features' parameters, True on all others"
        expect_equal(_count(numels, flags, True), 54_575_114, "trainable parameters with "
                     f"frozen features{when}", hint=hint, docs=docs("2.2"))  # fmt: skip
        expect_equal(_count(numels, flags, False), 2_469_696, "frozen parameters (the "
                     f"features){when}", hint=hint, docs=docs("2.2"))  # fmt: skip
        frozen = sorted(n for n, f in flags.items() if n.startswith("classifier.") and not f)
        expect(not frozen, f"classifier parameters{when}", "trainable", f"frozen: {frozen}",
               hint="only model.features is frozen: the whole classifier trains",
               docs=docs("2.2"))  # fmt: skip
    frozen = sorted(n for n, f in ft.items() if not f)
    expect_equal(_count(numels, ft, False), 0, "frozen parameters when fine-tuning (after "
                 "feature_extraction)", hint=f"still frozen: {frozen[:4]}; 'finetune' must "
                 "make every parameter trainable again", docs=docs("2.2"))  # fmt: skip
    expect_raises(ValueError, lambda: observe(_observe_bad_mode, "freeze_all"),
                  "set_mode(model, 'freeze_all')", hint="a mode other than "
                  "'feature_extraction' or 'finetune' is a mistake to report, not to ignore",
                  docs=docs("2.2"))  # fmt: skip


# ---------------------------------------------------------------- task 2.3
def _observe_preprocessing():
    return pretrained.preprocessing()


@pytest.mark.task("2.3", points=2)
def test_preprocessing_is_the_weights_own():
    p = observe(_observe_preprocessing)
    expect(isinstance(p, dict) and {"mean", "std", "size"} <= set(p), "preprocessing()",
           "a dict with keys 'mean', 'std', 'size'", repr(p)[:200],
           hint="read the three values from WEIGHTS.transforms()", docs=docs("2.3"))  # fmt: skip
    expect_close(p["mean"], (0.485, 0.456, 0.406), "ImageNet mean", atol=1e-6,
                 hint="read it from AlexNet_Weights.IMAGENET1K_V1.transforms()",
                 docs=docs("2.3"))  # fmt: skip
    expect_close(p["std"], (0.229, 0.224, 0.225), "ImageNet std", atol=1e-6,
                 hint="read it from AlexNet_Weights.IMAGENET1K_V1.transforms()",
                 docs=docs("2.3"))  # fmt: skip
    expect_equal(p["size"], 224, "input size (crop)",
                 hint="the crop the network sees, not the size it resizes to first",
                 docs=docs("2.3"))  # fmt: skip


# ---------------------------------------------------------------- task 2.4
def _observe_optimizer(modes, lr, backbone_lr):
    m = _alexnet(10)
    names = {id(p): name for name, p in m.named_parameters()}
    seen = {}
    for mode in modes:
        if mode == "feature_extraction":
            _freeze_features(m)
        else:
            m.requires_grad_(True)
        opt = pretrained.make_optimizer(m, lr=lr, backbone_lr=backbone_lr)
        seen[mode] = {
            "type": type(opt).__name__,
            "groups": [{"lr": g["lr"],
                        "params": [names.get(id(p), f"<not a parameter of the model, shape "
                                                    f"{tuple(p.shape)}>") for p in g["params"]],
                        "shapes": [tuple(p.shape) for p in g["params"]]}
                       for g in opt.param_groups],
        }  # fmt: skip
    defaults = pretrained.make_optimizer(m)  # lr, backbone_lr and momentum left out
    seen["defaults"] = [{"lr": g.get("lr"), "momentum": g.get("momentum")}
                        for g in defaults.param_groups]  # fmt: skip
    return seen


@pytest.mark.task("2.4", points=3)
def test_two_parameter_groups():
    shapes = {k: tuple(v.shape) for k, v in _fake_state(SEED).items()}
    shapes.update({"classifier.6.weight": (10, 4096), "classifier.6.bias": (10,)})
    modes = ["feature_extraction", "finetune"]
    o = observed(_observe_optimizer, modes, 1e-2, 1e-3, what="make_optimizer(model, lr=0.01, "
                 "backbone_lr=0.001) on a torchvision AlexNet", traps=(TENSOR_COMPARED,),
                 docs=docs("2.4"))  # fmt: skip
    expect_equal(o["defaults"], [{"lr": 1e-3, "momentum": 0.9}, {"lr": 1e-4, "momentum": 0.9}],
                 "make_optimizer(model) (fine-tuning): each group's lr and momentum with the "
                 "defaults", hint="the signature's defaults: lr=1e-3 for the head, "
                 "backbone_lr=1e-4 for the rest, momentum=0.9", docs=docs("2.4"))  # fmt: skip
    for mode in modes:
        groups = o[mode]["groups"]
        lrs = [g["lr"] for g in groups]
        expect_equal(lrs, [1e-2, 1e-3], f"{mode}: learning rate per group (head, pretrained "
                     "layers)", hint="two parameter groups, each a dict with its 'params' and "
                     "its 'lr': the head's first", docs=docs("2.4"))  # fmt: skip
        listed = [n for g in groups for n in g["params"]]
        want = {n for n in shapes if mode == "finetune" or not n.startswith("features.")}
        expect(len(listed) == len(set(listed)) and set(listed) == want, f"{mode}: parameters "
               "in the optimizer", "every trainable parameter once, no frozen one",
               f"{len(listed)} entries for {len(want)} trainable parameters; extra: "
               f"{sorted(set(listed) - want)[:3]}, missing: {sorted(want - set(listed))[:3]}",
               hint="keep only parameters with requires_grad True, and put the head's in "
               "group 0 only (tell tensors apart by id)", docs=docs("2.4"))  # fmt: skip
        expect_equal(set(groups[0]["params"]), set(HEAD), f"{mode}: group 0 holds the new "
                     "head (classifier[6]) only", hint="group 0: model.classifier[6]'s weight "
                     "and bias, at lr", docs=docs("2.4"))  # fmt: skip
        for g in groups:
            expect_equal(g["shapes"], [shapes.get(n) for n in g["params"]], f"{mode}: "
                         "parameter shapes in the optimizer", hint="the groups hold the "
                         "model's own parameters, not copies", docs=docs("2.4"))  # fmt: skip


def _observe_optimizer_any(cases):
    seen = []
    for num_classes, frozen, lr, backbone_lr, momentum in cases:
        m = _alexnet(num_classes)
        if frozen:
            _freeze_features(m)
        names = {id(p): name for name, p in m.named_parameters()}
        opt = pretrained.make_optimizer(m, lr=lr, backbone_lr=backbone_lr, momentum=momentum)
        seen.append({"type": type(opt).__name__,
                     "groups": [{"lr": g.get("lr"), "momentum": g.get("momentum"),
                                 "params": [names.get(id(p), "<not the model's>") for p in g["params"]]}
                                for g in opt.param_groups]})  # fmt: skip
        del m, opt
    return seen


@pytest.mark.task("2.4", points=1)
@drawn(examples=8)
@given(cases=st.lists(st.tuples(CLASSES, st.booleans(), st.floats(1e-4, 1.0), st.floats(1e-6, 1e-1),
                                st.floats(0.0, 0.99).filter(lambda m: m != 0.9)),
                      min_size=2, max_size=2))  # fmt: skip
def test_optimizer_settings_are_the_arguments(cases):
    got = observed(_observe_optimizer_any, cases, what="make_optimizer(model, lr=..., "
                   "backbone_lr=..., momentum=...) with drawn settings", traps=(TENSOR_COMPARED,),
                   docs=docs("2.4"))  # fmt: skip
    for (k, frozen, lr, backbone_lr, momentum), o in zip(cases, got):
        call = (f"make_optimizer(model with a {k}-class head{', features frozen' if frozen else ''}"
                f", lr={lr!r}, backbone_lr={backbone_lr!r}, momentum={momentum!r})")
        expect_equal(o["type"], "SGD", f"{call}: the optimizer's type", docs=docs("2.4"))
        groups = o["groups"]
        expect_equal([g["lr"] for g in groups], [lr, backbone_lr], f"{call}: learning rate per "
                     "group (head, pretrained layers)", hint="each group's 'lr' is the argument "
                     "given, whatever its value", docs=docs("2.4"))  # fmt: skip
        expect_equal([g["momentum"] for g in groups], [momentum, momentum], f"{call}: momentum "
                     "per group", hint="SGD's momentum is the momentum argument (0.9 is only its "
                     "default)", docs=docs("2.4"))  # fmt: skip
        expect_equal(sorted(groups[0]["params"]), sorted(HEAD), f"{call}: group 0",
                     hint="group 0: model.classifier[6]'s weight and bias, at lr",
                     docs=docs("2.4"))  # fmt: skip
        rest = sorted(n for n in _fake_state(SEED) if n not in HEAD and not (frozen and n.startswith("features.")))
        expect_equal(sorted(groups[1]["params"]), rest, f"{call}: group 1", hint="group 1: "
                     "every other trainable parameter, once", docs=docs("2.4"))  # fmt: skip


# ---------------------------------------------------------------- task 2.5
STEP_HINT = ("one SGD step per batch, each from that batch's own gradient: gradients left from "
             "the previous batch add up with the new ones (the page's Traps)")
def _observe_finetune_trains(seed, head, x, y, epochs):
    m = _start(seed, head)
    _freeze_features(m)
    m.eval()
    # the test's own two groups (task 2.4's shape), so a mistake there does not fail 2.5
    head_params = list(m.classifier[6].parameters())
    rest = [p for n, p in m.named_parameters() if p.requires_grad and not n.startswith("classifier.6.")]
    opt = torch.optim.SGD([{"params": head_params, "lr": 1e-2}, {"params": rest, "lr": 1e-3}],
                          lr=1e-2, momentum=0.9)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the dropout masks
        losses = pretrained.finetune(m, [(x, y)], epochs=epochs, optimizer=opt)  # device: "cpu"
    return {"losses": list(losses), "training": m.training,
            "features": {k: v for k, v in m.state_dict().items() if k.startswith("features.")},
            "head": m.classifier[6].weight.detach()}  # fmt: skip


@pytest.mark.task("2.5", points=3)
def test_finetune_trains_the_head_and_keeps_frozen_features():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 64, 64, generator=g), torch.arange(8) % 4
    head = _head(1, 4)
    o = observed(_observe_finetune_trains, SEED, head, x, y, 4, what="finetune(model, [one "
                 "batch of 8], epochs=4, optimizer, device='cpu')", traps=(LOADER_ONLY_ITERATED,),
                 docs=docs("2.5"))  # fmt: skip
    losses = [float(v) for v in o["losses"]]
    expect_equal(len(losses), 4, "finetune returns one loss per epoch",
                 hint="append the epoch's mean loss once per epoch", docs=docs("2.5"))  # fmt: skip
    expect(losses[-1] < losses[0], "training loss", "falling", [round(v, 3) for v in losses],
           hint="every batch makes one update with the optimizer you are given, from the "
           "gradient of that batch's loss (the page's idea)", docs=docs("2.5"))  # fmt: skip
    fake = _fake_state(SEED)
    feats = o["features"]
    expect(set(feats) == {k for k in fake if k.startswith("features.")}
           and all(torch.equal(v, fake[k]) for k, v in feats.items()),
           "frozen features after finetune", "unchanged", "changed",
           hint="train with the optimizer you are given; leave requires_grad as it is",
           docs=docs("2.5"))  # fmt: skip
    expect(not torch.equal(head["classifier.6.weight"], o["head"]), "the new head after "
           "finetune", "trained", "unchanged", hint="the optimizer moves the parameters only "
           "when it is told to, using the gradients already computed (the page's idea)",
           docs=docs("2.5"))  # fmt: skip
    expect(o["training"], "model mode during finetune", "training", "eval",
           hint="the test hands the model over in eval mode: switch it to training mode",
           docs=docs("2.5"))  # fmt: skip


def _observe_finetune_loop(seed, head, batches, lr, momentum, epochs):
    m = _start(seed, head)
    for layer in m.classifier:
        if isinstance(layer, nn.Dropout):
            layer.p = 0.0  # no randomness: the two runs must agree exactly
    m.requires_grad_(False)  # only the head trains: no time spent on other gradients
    m.classifier[6].requires_grad_(True)
    opt = torch.optim.SGD(m.classifier[6].parameters(), lr=lr, momentum=momentum)
    losses = pretrained.finetune(m, batches, epochs=epochs, optimizer=opt, device="cpu")
    return {"losses": list(losses), "weight": m.classifier[6].weight.detach(),
            "bias": m.classifier[6].bias.detach()}  # fmt: skip


@pytest.mark.task("2.5", points=2)
def test_finetune_matches_a_reference_loop():
    g = torch.Generator().manual_seed(1)
    # two batches of different sizes, as a loader's last batch often is
    batches = [(torch.randn(n, 3, 64, 64, generator=g), torch.arange(n)) for n in (4, 3)]
    head = _head(2, 4)
    o = observed(_observe_finetune_loop, SEED, head, batches, 0.05, 0.9, 2, what="finetune(model, "
                 "[batches of 4 and 3], epochs=2, optimizer, device='cpu')",
                 traps=(LOADER_ONLY_ITERATED,), docs=docs("2.5"))  # fmt: skip
    ref = _start(SEED, head)
    for layer in ref.classifier:
        if isinstance(layer, nn.Dropout):
            layer.p = 0.0
    ref.requires_grad_(False)
    ref.classifier[6].requires_grad_(True)
    ref.train()
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
        ref_losses.append(total / 7)
    expect_close(o["losses"], ref_losses, "finetune: mean loss per epoch against the reference "
                 "loop", atol=1e-4, rtol=1e-4,
                 hint="the epoch's loss is the mean over its samples: weight each batch's "
                 "loss by its size (the last batch has 3 samples, not 4)",
                 docs=docs("2.5"))  # fmt: skip
    expect_close(o["weight"], ref.classifier[6].weight, "finetune: head weights after 2 "
                 "epochs against the reference loop", atol=1e-5, rtol=1e-4,
                 hint=STEP_HINT, docs=docs("2.5"))  # fmt: skip
    expect_close(o["bias"], ref.classifier[6].bias, "finetune: head bias after 2 epochs "
                 "against the reference loop", atol=1e-5, rtol=1e-4,
                 hint=STEP_HINT, docs=docs("2.5"))  # fmt: skip


def _reference_finetune(seed, head, batches, lr, momentum, epochs):
    """The reference loop from the same start, only the head training (dropout off): the
    frozen layers' output is computed once per batch. Losses per epoch, head weight, bias."""
    ref = _start(seed, head).eval()  # eval: dropout off (AlexNet has no other mode switch)
    with torch.no_grad():
        feats = [(ref.classifier[:6](torch.flatten(ref.avgpool(ref.features(x)), 1)), y)
                 for x, y in batches]  # fmt: skip
    fc = ref.classifier[6]
    opt = torch.optim.SGD(fc.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(epochs):
        total, seen = 0.0, 0
        for h, y in feats:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(fc(h), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
        losses.append(total / seen)
    return losses, fc.weight.detach(), fc.bias.detach()


@st.composite
def _loader(draw):
    """A plain list of batches: drawn sizes (the last one often smaller), drawn labels (some
    classes missing, none tied to its position)."""
    k = draw(st.integers(2, 6))
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=2))
    labels = [draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)) for n in sizes]
    return k, labels


def _observe_finetune_any(seed, cases):
    return [_observe_finetune_loop(seed, *case) for case in cases]


@pytest.mark.task("2.5", points=1)
@drawn(examples=1)  # two models a draw (yours, the reference): each holds 57 M parameters
@given(loader=_loader(), epochs=st.integers(1, 2), lr=st.floats(1e-3, 0.2),
       momentum=st.floats(0.0, 0.95), seed=st.integers(0, 2**16))  # fmt: skip
def test_finetune_matches_a_reference_loop_on_drawn_batches(loader, epochs, lr, momentum, seed):
    k, labels = loader
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(len(y), 3, 64, 64, generator=g), torch.tensor(y)) for y in labels]
    head = _head(seed, k)
    call = (f"finetune(model with a {k}-class head, [batches of {[len(y) for y in labels]}, "
            f"labels {labels}], epochs={epochs}, SGD(lr={lr:.4g}, momentum={momentum:.4g}))")
    (o,) = observed(_observe_finetune_any, SEED, [(head, batches, lr, momentum, epochs)],
                    what=call, traps=(LOADER_ONLY_ITERATED,), docs=docs("2.5"))  # fmt: skip
    losses, weight, bias = _reference_finetune(SEED, head, batches, lr, momentum, epochs)
    expect_close(o["losses"], losses, f"{call}: mean loss per epoch against the reference loop",
                 atol=1e-4, rtol=1e-4, hint="the epoch's loss is the mean over its samples: "
                 "weight each batch's loss by its size", docs=docs("2.5"))  # fmt: skip
    expect_close(o["weight"], weight, f"{call}: head weights against the reference loop",
                 atol=1e-5, rtol=1e-4, hint=STEP_HINT, docs=docs("2.5"))  # fmt: skip
    expect_close(o["bias"], bias, f"{call}: head bias against the reference loop", atol=1e-5,
                 rtol=1e-4, hint=STEP_HINT, docs=docs("2.5"))  # fmt: skip


def _observe_finetune_device(seed, head, x, y, device):
    m = _start(seed, head)
    opt = torch.optim.SGD(m.classifier[6].parameters(), lr=1e-3)
    pretrained.finetune(m, [(x, y)], epochs=1, optimizer=opt, device=device)
    return sorted({p.device.type for p in m.parameters()})


@pytest.mark.task("2.5", points=1)
@pytest.mark.gpu
def test_finetune_moves_the_model_to_the_device():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 3, 64, 64, generator=g), torch.arange(4)
    o = observe(_observe_finetune_device, SEED, _head(3, 4), x, y, "cuda")
    expect_equal(o, ["cuda"], "device of the model's parameters after finetune",
                 hint="the model's parameters must end on device, and every batch must be "
                 "there too when the model sees it", docs=docs("2.5"))  # fmt: skip
