"""Graded tests for lesson 03, part 1: the AlexNet model (tasks 3.1 - 3.7).

Run them with ``pytest lessons/03_torch_scratch`` (one task: ``pytest -m task3_2 ...``).
Every check of what your layers compute loads weights chosen HERE into your Conv2d and
Linear layers (seeded, with the paper's shapes) and compares your output with a reference
written out inside this file from the paper's formulas, using those same weights, so a
mismatch is a real difference in what the network computes. Inputs are drawn on the CPU
from a fixed seed. Only the initialisation tests (task 3.7) look at your own weights.

Each test has two halves: an ``_observe_*`` function that calls your code and returns data
(your layers' shapes, your outputs), and the test itself, which checks that data against
the reference computed here.
"""

import contextlib
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_course.device import seed_everything
from alexnet_course.grading import learner
from alexnet_course.grading.checks import (
    expect,
    expect_close,
    expect_equal,
    expect_raises,
    expect_shape,
)
from alexnet_course.grading.remote import observe

alexnet = learner.load(__file__, "alexnet")
DOCS = "docs/lessons/03_torch_scratch.md"
ATOL = 1e-5  # float32, same operations in the same order: differences are rounding only
PAPER_LRN = {"n": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75}  # section 3.3
LAYER_PARAMS = [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 40_970]
# (weight, bias) shapes of conv1 .. conv5, fc6, fc7 (fc8's depends on the classes)
PAPER_SHAPES = [((96, 3, 11, 11), (96,)), ((256, 96, 5, 5), (256,)), ((384, 256, 3, 3), (384,)),
                ((384, 384, 3, 3), (384,)), ((256, 384, 3, 3), (256,)), ((4096, 9216), (4096,)),
                ((4096, 4096), (4096,))]  # fmt: skip
ORDER = "Conv2d layers first, then Linear layers, each in the order model.modules() visits them"


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def lrn_reference(a: torch.Tensor, n=5, k=2.0, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """The paper's formula: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta."""
    sq = F.pad(a.pow(2), (0, 0, 0, 0, n // 2, n // 2))  # zero channels beyond the edges
    window = sum(sq[:, j : j + a.shape[1]] for j in range(n))
    return a / (k + alpha * window).pow(beta)


def randn(*shape, scale=1.0, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


@functools.lru_cache(maxsize=2)
def drawn_weights(num_classes: int = 10, seed: int = 0) -> tuple:
    """The weights this file loads into your layers: (weight, bias) of conv1 .. fc8 with the
    paper's shapes, drawn on the CPU from ``seed``. Weights are He-scaled normal (std
    sqrt(2 / fan_in), which keeps activations about the size of the input), conv1's 20 times
    larger so that the activations LRN sees are in the tens and its alpha visibly matters;
    biases N(0, 1). Cached (never modify them): several tests use the same draw."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (w, b) in enumerate([*PAPER_SHAPES, ((num_classes, 4096), (num_classes,))]):
        gain = 20.0 if i == 0 else 1.0
        out.append((torch.randn(w, generator=g) * (gain * math.sqrt(2 / math.prod(w[1:]))),
                    torch.randn(b, generator=g)))  # fmt: skip
    return tuple(out)


def shapes_of(layers) -> list:
    return [(tuple(w.shape), tuple(b.shape)) for w, b in layers]


def tolerance(ref: torch.Tensor, rel: float) -> dict:
    """``rel`` of the reference's largest value (and relative): rounding only, at any scale."""
    return {"atol": rel * max(1.0, float(ref.abs().max())), "rtol": rel}


def reference_conv(x, layer, stride=1, padding=0):
    """``layer``: a (weight, bias) pair."""
    return F.conv2d(x, layer[0], layer[1], stride=stride, padding=padding)


def reference_features(x, convs, norm="lrn"):
    """The paper's feature extractor, written with functional ops and the given convs."""
    post = lrn_reference if norm == "lrn" else (lambda t: t)
    x = F.max_pool2d(post(F.relu(reference_conv(x, convs[0], stride=4))), 3, 2)
    x = F.max_pool2d(post(F.relu(reference_conv(x, convs[1], padding=2))), 3, 2)
    for conv in convs[2:5]:
        x = F.relu(reference_conv(x, conv, padding=1))
    return F.max_pool2d(x, 3, 2)


def reference_classifier(x, linears):
    x = F.relu(F.linear(x, *linears[0]))
    x = F.relu(F.linear(x, *linears[1]))
    return F.linear(x, *linears[2])


def reference_alexnet(x, layers, norm="lrn"):
    """The whole network (eval mode): features, the adaptive average pool to 6x6, flatten,
    classifier."""
    feats = F.adaptive_avg_pool2d(reference_features(x, layers, norm), (6, 6))
    return reference_classifier(torch.flatten(feats, 1), layers[5:])


def param_counts(shapes) -> list[int]:
    """Parameters per layer from (weight shape, bias shape or None) pairs."""
    return [math.prod(w) + (math.prod(b) if b is not None else 0) for w, b in shapes]


def expect_param_counts(shapes, expected, what, task):
    expect_equal(param_counts(shapes), expected,
                 f"{what}: parameters per Conv2d/Linear layer ({ORDER})",
                 hint="count weights (out * in * kh * kw) plus one bias per output",
                 docs=docs(task))  # fmt: skip


def expect_layers(o: dict, layers, what: str, task: str) -> None:
    """Your Conv2d/Linear layers, as an observe half found them, against the paper's: the
    parameters per layer, then the shapes (the test's weights are loaded only when they all
    match)."""
    expect_param_counts(o["shapes"], param_counts(shapes_of(layers)), what, task)
    expect_equal(o["shapes"], shapes_of(layers), f"{what}: (weight, bias) shapes per "
                 f"Conv2d/Linear layer ({ORDER})", hint="nn.Conv2d(in, out, kernel) and "
                 "nn.Linear(in, out), each with a bias", docs=docs(task))  # fmt: skip
    expect(o["loaded"], f"{what}: loading this test's weights into your layers", "loaded",
           o.get("error"), docs=docs(task))  # fmt: skip


# ---------------------------------------------------------------- observe halves: helpers
def _weighted(module: nn.Module) -> list[nn.Module]:
    """The Conv2d layers of ``module``, then its Linear layers, each kind in module order."""
    found = list(module.modules())
    return [m for m in found if isinstance(m, nn.Conv2d)] + [m for m in found if isinstance(m, nn.Linear)]


def _shapes(module: nn.Module) -> list:
    """(weight shape, bias shape or None) of every weighted layer, in :func:`_weighted`'s order."""
    return [(tuple(m.weight.shape), None if m.bias is None else tuple(m.bias.shape))
            for m in _weighted(module)]  # fmt: skip


def _weights(module: nn.Module) -> list:
    """(weight, bias) of every weighted layer, in :func:`_weighted`'s order."""
    return [(m.weight, m.bias) for m in _weighted(module)]


def _load(module: nn.Module, layers) -> dict:
    """Copy the test's (weight, bias) pairs into ``module``'s weighted layers, in order, when
    every shape matches; the shapes found (and whether the weights went in) come back."""
    shapes = _shapes(module)
    out = {"shapes": shapes, "loaded": False}
    if shapes == [(tuple(w.shape), tuple(b.shape)) for w, b in layers]:
        try:
            with torch.no_grad():
                for m, (w, b) in zip(_weighted(module), layers):
                    m.weight.copy_(w)
                    m.bias.copy_(b)
            out["loaded"] = True
        except RuntimeError as e:  # e.g. a weight that is not a tensor copy_ can write
            out["error"] = f"{type(e).__name__}: {e}"[:300]
    return out


@pytest.fixture(autouse=True, scope="module")
def _release_cached_models():
    """This file's cached weights and model (about 0.5 GB) go when its tests are done: the
    suite's later files start without them."""
    yield
    drawn_weights.cache_clear()
    _model10.cache_clear()


@functools.lru_cache(maxsize=1)
def _model10(seed: int = 0) -> tuple:
    """AlexNet(num_classes=10) made after seeding, and a copy of its own initial weights
    (tests load theirs into the model): built once, shared by several tests."""
    seed_everything(seed)
    model = alexnet.AlexNet(num_classes=10)
    initial = [(w.detach().clone(), None if b is None else b.detach().clone()) for w, b in _weights(model)]
    return model, initial


@contextlib.contextmanager
def _linear_inputs_seen(model: nn.Module):
    """Yield a list of what each Linear layer of ``model`` receives, in call order, however
    the learner calls it: ``layer(x)`` and ``layer.forward(x)`` alike (a forward pre-hook
    misses the second). Each layer's class is swapped for a recording subclass, then back."""
    seen: list = []

    def recording(base):
        def forward(self, *args, **kwargs):
            seen.append((args[0] if args else next(iter(kwargs.values()))).detach().clone())
            return base.forward(self, *args, **kwargs)

        return type(base.__name__, (base,), {"forward": forward})

    swapped = [(m, type(m)) for m in model.modules() if isinstance(m, nn.Linear)]
    for m, base in swapped:
        m.__class__ = recording(base)
    try:
        yield seen
    finally:
        for m, base in swapped:
            m.__class__ = base


def _linear_inputs(model: nn.Module, x: torch.Tensor, training: bool, seed: int) -> dict:
    """Run ``model`` twice in one mode; record what each Linear layer received."""
    model.train(training)
    torch.manual_seed(seed)
    with _linear_inputs_seen(model) as seen, torch.no_grad():
        first = model(x)
        n = len(seen)
        second = model(x)
    return {"inputs": seen[:n], "out": first, "out2": second}


# ---------------------------------------------------------------- Task 3.1: LRN and the switch
def _observe_paper_lrn(x):
    return alexnet.paper_lrn()(x)


@pytest.mark.task("3.1", points=2)
def test_paper_lrn_matches_the_papers_formula():
    x = randn(2, 16, 5, 5, scale=30.0)  # large activations, so alpha visibly matters
    out = observe(_observe_paper_lrn, x)
    expect_close(out, lrn_reference(x), "paper_lrn() against the paper's formula "
                 "(n=5, k=2, alpha=1e-4, beta=0.75)", atol=1e-5, rtol=1e-5,
                 hint="torch's LocalResponseNorm divides alpha by size: pass alpha=5e-4 to get "
                      "the paper's 1e-4", docs=docs("3.1"))  # fmt: skip


def _observe_norm_layer(x):
    lrn = alexnet.norm_layer("lrn", 8)
    bn = alexnet.norm_layer("batch", 8)
    none = alexnet.norm_layer("none", 8)
    return {"lrn": lrn(x), "bn_is_batchnorm": isinstance(bn, nn.BatchNorm2d),
            "bn_features": getattr(bn, "num_features", None), "bn_repr": repr(bn)[:200],
            "bn_train": bn.train()(x), "none": none(x)}  # fmt: skip


def _observe_norm_layer_unknown():
    alexnet.norm_layer("layer", 8)


@pytest.mark.task("3.1", points=1)
def test_norm_layer_switch():
    x = randn(2, 8, 4, 4, scale=20.0)
    o = observe(_observe_norm_layer, x)
    expect_close(o["lrn"], lrn_reference(x), "norm_layer('lrn', 8)", atol=1e-5, rtol=1e-5,
                 docs=docs("3.1"))  # fmt: skip
    expect(o["bn_is_batchnorm"] and o["bn_features"] == 8, "norm_layer('batch', 8)",
           "BatchNorm2d(8)", o["bn_repr"], docs=docs("3.1"))  # fmt: skip
    expect_close(o["bn_train"], F.batch_norm(x, None, None, training=True),
                 "norm_layer('batch', 8) in training mode (a new layer: weight 1, bias 0)",
                 atol=1e-4, docs=docs("3.1"))  # fmt: skip
    expect_close(o["none"], x, "norm_layer('none', 8) must pass its input through", atol=0,
                 docs=docs("3.1"))  # fmt: skip
    expect_raises(ValueError, lambda: observe(_observe_norm_layer_unknown),
                  "norm_layer('layer', 8): a norm that is not 'lrn', 'batch' or 'none'",
                  hint="raise ValueError naming the accepted values; a silent default hides "
                       "typos in a config", docs=docs("3.1"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.2: conv1
def _observe_conv1(norm, layers, x):
    block = alexnet.conv1_block(norm).eval()
    o = _load(block, layers)
    if o["loaded"]:
        with torch.no_grad():
            o["out"] = block(x)
    return o


@pytest.mark.task("3.2", points=2)
@pytest.mark.parametrize("norm", ["lrn", "none"])
def test_conv1_block_shape_and_values(norm):
    x = randn(2, 3, 227, 227)
    layers = drawn_weights()[:1]
    o = observe(_observe_conv1, norm, layers, x)
    expect_equal(len(o["shapes"]), 1, "conv1_block: number of Conv2d layers", docs=docs("3.2"))
    expect_layers(o, layers, "conv1_block", "3.2")
    expect_shape(o["out"], (2, 96, 27, 27), "conv1_block on (2, 3, 227, 227)",
                 hint="conv 11x11 stride 4 gives 55x55; the max-pool 3/2 gives 27x27",
                 docs=docs("3.2"))  # fmt: skip
    post = lrn_reference if norm == "lrn" else (lambda t: t)
    ref = F.max_pool2d(post(F.relu(reference_conv(x, layers[0], stride=4))), 3, 2)
    expect_close(o["out"], ref, f"conv1_block({norm!r}) with this test's weights against conv "
                 f"-> ReLU -> {'LRN' if norm == 'lrn' else 'no norm'} -> max-pool 3/2",
                 **tolerance(ref, ATOL), hint="check the order (ReLU before LRN), the stride, "
                 "the pool's kernel and stride (3 and 2: overlapping pooling)",
                 docs=docs("3.2"))  # fmt: skip


def _observe_conv1_params():
    return {"shapes": _shapes(alexnet.conv1_block("lrn"))}


@pytest.mark.task("3.2", points=1)
def test_conv1_block_parameters():
    expect_param_counts(observe(_observe_conv1_params)["shapes"], [34_944], "conv1_block", "3.2")


# ---------------------------------------------------------------- Task 3.3: conv2
def _observe_conv2(layers, x):
    block = alexnet.conv2_block("lrn").eval()
    o = _load(block, layers)
    if o["loaded"]:
        with torch.no_grad():
            o["out"] = block(x)
    return o


@pytest.mark.task("3.3", points=2)
def test_conv2_block_shape_values_and_parameters():
    x = F.relu(randn(2, 96, 27, 27, scale=20.0))  # conv1's size of activations: LRN matters
    layers = drawn_weights()[1:2]
    o = observe(_observe_conv2, layers, x)
    expect_layers(o, layers, "conv2_block", "3.3")
    expect_shape(o["out"], (2, 256, 13, 13), "conv2_block on (2, 96, 27, 27)",
                 hint="padding 2 keeps 27x27; the max-pool 3/2 gives 13x13", docs=docs("3.3"))  # fmt: skip
    ref = F.max_pool2d(lrn_reference(F.relu(reference_conv(x, layers[0], padding=2))), 3, 2)
    expect_close(o["out"], ref, "conv2_block('lrn') with this test's weights against conv 5x5 "
                 "pad 2 -> ReLU -> LRN -> max-pool 3/2", **tolerance(ref, ATOL),
                 docs=docs("3.3"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.4: conv3 - conv5
def _observe_conv3_to_5(layers, x):
    block = alexnet.conv3_to_5("lrn").eval()
    o = _load(block, layers)
    if o["loaded"]:
        with torch.no_grad():
            o["out"] = block(x)
    return o


@pytest.mark.task("3.4", points=2)
def test_conv3_to_5_shape_values_and_parameters():
    x = F.relu(randn(2, 256, 13, 13))
    layers = drawn_weights()[2:5]
    o = observe(_observe_conv3_to_5, layers, x)
    expect_layers(o, layers, "conv3_to_5", "3.4")
    expect_shape(o["out"], (2, 256, 6, 6), "conv3_to_5 on (2, 256, 13, 13)",
                 hint="3x3 convolutions with padding 1 keep 13x13; the pool 3/2 gives 6x6",
                 docs=docs("3.4"))  # fmt: skip
    ref = x
    for conv in layers:
        ref = F.relu(reference_conv(ref, conv, padding=1))
    ref = F.max_pool2d(ref, 3, 2)
    expect_close(o["out"], ref, "conv3_to_5('lrn') with this test's weights against three conv "
                 "3x3 pad 1 + ReLU, then max-pool 3/2 (the paper has no LRN here)",
                 **tolerance(ref, ATOL), docs=docs("3.4"))  # fmt: skip


def _observe_conv3_to_5_batch(x):
    block = alexnet.conv3_to_5("batch")
    bns = [m.num_features for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        return {"bn_features": bns, "out": block.eval()(x)}


@pytest.mark.task("3.4", points=1)
def test_conv3_to_5_batch_norm_variant():
    o = observe(_observe_conv3_to_5_batch, randn(1, 256, 13, 13))
    expect_equal(o["bn_features"], [384, 384, 256],
                 "conv3_to_5('batch'): BatchNorm2d layers (num_features)", docs=docs("3.4"))  # fmt: skip
    expect_shape(o["out"], (1, 256, 6, 6), "conv3_to_5('batch')")


# ---------------------------------------------------------------- Task 3.5: classifier
def _observe_classifier(layers, x):
    head = alexnet.classifier(10, 0.5).eval()
    o = _load(head, layers)
    if o["loaded"]:
        with torch.no_grad():
            o["out"] = head(x)
    return o


@pytest.mark.task("3.5", points=2)
def test_classifier_shape_values_and_parameters():
    x = randn(4, 9216)
    layers = drawn_weights()[5:]
    o = observe(_observe_classifier, layers, x)
    expect_layers(o, layers, "classifier(10)", "3.5")
    expect_shape(o["out"], (4, 10), "classifier on (4, 9216)", docs=docs("3.5"))
    ref = reference_classifier(x, layers)
    expect_close(o["out"], ref, "classifier in eval mode, with this test's weights, against "
                 "Linear-ReLU-Linear-ReLU-Linear (logits)", **tolerance(ref, ATOL),
                 hint="no softmax at the end (CrossEntropyLoss takes logits); dropout off in "
                 "eval mode", docs=docs("3.5"))  # fmt: skip


def _observe_classifier_dropout(layers, x, p):
    head = alexnet.classifier(10, p)
    o = _load(head, layers)
    if o["loaded"]:
        o["train"] = _linear_inputs(head, x, True, 0)
        o["eval"] = _linear_inputs(head, x, False, 0)
    return o


def check_dropout(o, linears, pre_fc6, p, what, task):
    """Judge dropout by what it does: in training mode each of fc6's and fc7's inputs is
    zeroed with probability p and the kept ones are scaled by 1/(1-p); fc8's input is not
    dropped; in eval mode nothing is random. ``linears``: this test's fc6, fc7, fc8 weights,
    loaded into your layers."""
    train, ev = o["train"], o["eval"]
    expect_equal(len(train["inputs"]), 3, f"{what}: Linear layers a forward pass goes "
                 "through", docs=docs(task))  # fmt: skip
    expect(not torch.equal(train["out"], train["out2"]), f"{what} in train mode: two passes",
           "different (dropout is random)", "identical", docs=docs(task))  # fmt: skip
    expect_close(ev["out"], ev["out2"], f"{what} in eval mode: two passes", atol=0,
                 hint="dropout must be off in eval mode: nn.Dropout, or F.dropout with "
                      "training=self.training", docs=docs(task))  # fmt: skip
    t6, t7, t8 = train["inputs"]
    pre7 = F.relu(F.linear(t6, *linears[0]))
    pre8 = F.relu(F.linear(t7, *linears[1]))
    for name, dropped, pre in (("fc6", t6, pre_fc6), ("fc7", t7, pre7)):
        live = pre != 0
        frac = float((dropped[live] == 0).float().mean())
        expect(abs(frac - p) < 0.03, f"{what} in train mode: fraction of {name}'s inputs "
               "zeroed by dropout", f"{p:g} (+- 0.03)", f"{frac:.3f}",
               hint="dropout before fc6 and before fc7, with the probability asked for "
                    "(check AlexNetConfig's default too)", docs=docs(task))  # fmt: skip
        kept = live & (dropped != 0)
        expect_close(dropped[kept], pre[kept] / (1 - p), f"{what} in train mode: {name}'s "
                     f"kept inputs (scaled by 1/(1-p) = {1 / (1 - p):.3g})", atol=1e-5,
                     rtol=1e-4, hint="inverted dropout scales what it keeps during training, "
                     "so nothing changes at eval time", docs=docs(task))  # fmt: skip
    expect_close(t8, pre8, f"{what} in train mode: fc8's input (no dropout before the last "
                 "layer)", **tolerance(pre8, 1e-5), docs=docs(task))  # fmt: skip


@pytest.mark.task("3.5", points=1)
def test_classifier_dropout_only_in_training():
    x = randn(3, 9216)
    layers = drawn_weights()[5:]
    o = observe(_observe_classifier_dropout, layers, x, 0.3)
    expect_layers(o, layers, "classifier(10, dropout=0.3)", "3.5")
    check_dropout(o, layers, x, 0.3, "classifier(10, dropout=0.3)", "3.5")


# ---------------------------------------------------------------- Task 3.6: the network
def _observe_alexnet_structure(x):
    model = _model10()[0].eval()
    blocks = {name: hasattr(model, name) for name in ("features", "avgpool", "classifier")}
    out = {"blocks": blocks, "shapes": _shapes(model),
           "params": [tuple(p.shape) for p in model.parameters()]}  # fmt: skip
    if all(blocks.values()):
        with torch.no_grad():
            out["features"] = model.features(x)
            out["out"] = model(x)
    return out


@pytest.mark.task("3.6", points=2)
def test_alexnet_shapes_and_parameter_counts():
    o = observe(_observe_alexnet_structure, randn(2, 3, 227, 227))
    for name, present in o["blocks"].items():
        expect(present, f"AlexNet has a '{name}' block", name, "missing", docs=docs("3.6"))
    expect_param_counts(o["shapes"], LAYER_PARAMS, "AlexNet(num_classes=10)", "3.6")
    total = sum(math.prod(s) for s in o["params"])
    expect_equal(total, 58_322_314, "AlexNet(num_classes=10): total parameters",
                 docs=docs("3.6"))  # fmt: skip
    expect_shape(o["features"], (2, 256, 6, 6), "model.features on (2, 3, 227, 227)",
                 docs=docs("3.6"))  # fmt: skip
    expect_shape(o["out"], (2, 10), "AlexNet on (2, 3, 227, 227)", docs=docs("3.6"))


def _observe_alexnet_1000():
    return [tuple(p.shape) for p in alexnet.AlexNet(num_classes=1000).parameters()]


@pytest.mark.task("3.6", points=1)
def test_alexnet_1000_classes():
    total = sum(math.prod(s) for s in observe(_observe_alexnet_1000))
    expect_equal(total, 62_378_344, "AlexNet(num_classes=1000): total parameters",
                 docs=docs("3.6"))  # fmt: skip


def _observe_alexnet_forward(layers, x):
    model = _model10()[0].eval()
    o = _load(model, layers)
    if o["loaded"]:
        # what the first Linear layer called received: the classifier's input
        with _linear_inputs_seen(model) as seen, torch.no_grad():
            o["out"] = model(x)
        o["classifier_input"] = seen[0] if seen else None
    return o


@pytest.mark.task("3.6", points=3)
def test_alexnet_forward_matches_reference():
    x = randn(2, 3, 227, 227, seed=7)
    layers = drawn_weights()
    o = observe(_observe_alexnet_forward, layers, x)
    expect_layers(o, layers, "AlexNet(num_classes=10)", "3.6")
    with torch.no_grad():  # reference_alexnet's two halves: the features are checked first
        flat = torch.flatten(F.adaptive_avg_pool2d(reference_features(x, layers), (6, 6)), 1)
        ref = reference_classifier(flat, layers[5:])
    got = o.get("classifier_input")
    if isinstance(got, torch.Tensor) and got.shape == flat.shape:  # where it goes wrong, first
        tol = tolerance(flat, 1e-4)
        reordered = torch.allclose(got.sort(1).values, flat.sort(1).values, **tol)
        expect_close(got, flat, "what the classifier's first Linear layer received (eval "
                     "mode), against the paper's features with the same weights, pooled and "
                     "flattened", **tol,
                     hint="the same numbers in another order: flatten each sample in (C, H, W) "
                     "order, channels first, then rows, then columns" if reordered
                     else "the features differ before the classifier: conv -> ReLU -> LRN -> "
                     "max-pool for conv1 and conv2, conv -> ReLU for conv3-5, a max-pool after "
                     "conv5, then the adaptive average pool to 6x6; the tests of tasks 3.1-3.4 "
                     "say which layer differs", docs=docs("3.6"))  # fmt: skip
    expect_close(o["out"], ref, "AlexNet forward (eval mode) with this test's weights against "
                 "the paper's network with the same weights", **tolerance(ref, 1e-4),
                 hint="features -> avgpool -> each sample flattened in (C, H, W) order -> "
                      "classifier; logits, no softmax", docs=docs("3.6"))  # fmt: skip


def _observe_channels_last(layers, x):
    model = _model10()[0].eval()
    o = _load(model, layers)
    if o["loaded"]:
        with torch.no_grad():
            o["plain"] = model(x)
            try:
                o["channels_last"] = model(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as e:
                o["error"] = f"{type(e).__name__}: {e}"[:300]
    return o


@pytest.mark.task("3.6", points=1)
def test_alexnet_accepts_channels_last_input():
    x = randn(2, 3, 67, 67, seed=10)
    layers = drawn_weights()
    o = observe(_observe_channels_last, layers, x)
    expect_layers(o, layers, "AlexNet(num_classes=10)", "3.6")
    with torch.no_grad():
        ref = reference_alexnet(x, layers)
    what = "AlexNet forward (eval mode) on channels_last input (the GPU's fast memory layout)"
    hint = ("flatten with an operation that copies when it must: view() needs each "
            "sample's values stored in (C, H, W) order, and in channels_last memory they are "
            "not (the page's trap)")  # fmt: skip
    expect("error" not in o, what, "the same logits as for ordinary input", o.get("error"),
           hint=hint, docs=docs("3.6"))  # fmt: skip
    expect_close(o["plain"], ref, "AlexNet forward (eval mode) on ordinary input, 67 px, with "
                 "this test's weights, against the paper's network", **tolerance(ref, 1e-4),
                 hint="features -> avgpool (adaptive, to 6x6) -> each sample flattened in "
                      "(C, H, W) order -> classifier", docs=docs("3.6"))  # fmt: skip
    expect_close(o["channels_last"], ref, f"{what}, against the paper's network on the same "
                 "input", **tolerance(ref, 1e-4), hint=hint, docs=docs("3.6"))  # fmt: skip


def _observe_alexnet_dropout(layers, x):
    model = alexnet.AlexNet()  # the defaults of YOUR AlexNetConfig
    o = _load(model, layers)
    if o["loaded"]:
        o["train"] = _linear_inputs(model, x, True, 0)
        o["eval"] = _linear_inputs(model, x, False, 0)
    return o


@pytest.mark.task("3.6", points=1)
def test_alexnet_dropout_only_in_training():
    layers = drawn_weights()
    o = observe(_observe_alexnet_dropout, layers, randn(4, 3, 67, 67, seed=8))
    expect_layers(o, layers, "AlexNet() (its default configuration: 10 classes)", "3.6")
    inputs = o["eval"]["inputs"]
    expect(len(inputs) == 3, "AlexNet(): Linear layers a forward pass goes through", 3,
           len(inputs), docs=docs("3.6"))  # fmt: skip
    check_dropout(o, layers[5:], inputs[0], 0.5, "AlexNet() (its default configuration)", "3.6")


def _observe_norm_switch(layers, x):
    seed_everything(5)
    bn = alexnet.AlexNet(num_classes=10, norm="batch")
    kinds = [type(m).__name__ for m in bn.modules()
             if isinstance(m, (nn.BatchNorm2d, nn.LocalResponseNorm))]  # fmt: skip
    del bn
    plain = alexnet.AlexNet(num_classes=10, norm="none").eval()
    o = {"kinds": kinds, **_load(plain, layers)}
    if o["loaded"]:
        with torch.no_grad():
            o["out"] = plain(x)
    return o


def _observe_alexnet_group():
    alexnet.AlexNet(num_classes=10, norm="group")


@pytest.mark.task("3.6", points=2)
def test_alexnet_norm_switch():
    x = randn(1, 3, 227, 227, seed=9)
    layers = drawn_weights()
    o = observe(_observe_norm_switch, layers, x)
    expect_equal(o["kinds"], ["BatchNorm2d"] * 5, "AlexNet(norm='batch'): normalisation layers",
                 hint="BatchNorm2d after conv1 and conv2 (where LRN was) and after conv3-5",
                 docs=docs("3.6"))  # fmt: skip
    expect_layers(o, layers, "AlexNet(num_classes=10, norm='none')", "3.6")
    with torch.no_grad():
        ref = reference_alexnet(x, layers, "none")
    expect_close(o["out"], ref, "AlexNet(norm='none') forward with this test's weights against "
                 "the paper's network without LRN", **tolerance(ref, 1e-4),
                 docs=docs("3.6"))  # fmt: skip
    expect_raises((ValueError, TypeError), lambda: observe(_observe_alexnet_group),
                  "AlexNet(num_classes=10, norm='group'): a norm the switch does not know",
                  hint="AlexNetConfig checks norm in __post_init__: build the network from the "
                       "config", docs=docs("3.6"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.7: initialisation
def check_paper_init(layers, what):
    stds = [round(float(w.std()), 4) for w, _ in layers]
    means = [float(w.mean()) for w, _ in layers]
    expect(all(abs(s - 0.01) < 0.0015 for s in stds) and all(abs(m) < 2e-3 for m in means),
           f"{what}: weight std per layer (paper: N(0, 0.01))", [0.01] * 8, stds,
           hint="every Conv2d and Linear weight from a normal distribution, mean 0, std 0.01 "
                "(look up torch.nn.init)", docs=docs("3.7"))  # fmt: skip
    biases = []
    for _, b in layers:
        biases.append(float(b[0]) if b is not None and torch.all(b == b[0]) else "mixed")
    expect_equal(biases, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                 f"{what}: bias constant per layer (conv1..conv5, fc6, fc7, fc8)",
                 hint="1 in conv2, conv4, conv5 and the hidden fully connected layers",
                 docs=docs("3.7"))  # fmt: skip


def _observe_init(seed):
    seed_everything(seed)
    model = alexnet.AlexNet(num_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)  # scramble, so that only init_paper_weights can fix it
    returned = alexnet.init_paper_weights(model)
    return {"same": returned is model, "returned": type(returned).__name__,
            "layers": _weights(model)}  # fmt: skip


@pytest.mark.task("3.7", points=2)
def test_init_paper_weights():
    o = observe(_observe_init, 6)
    expect(o["same"], "init_paper_weights returns the model", "the same model", o["returned"],
           docs=docs("3.7"))  # fmt: skip
    check_paper_init(o["layers"], "init_paper_weights(model)")


def _observe_new_model_weights():
    return _model10()[1]  # its weights as built, before any test loaded its own


@pytest.mark.task("3.7", points=1)
def test_alexnet_is_initialised_like_the_paper():
    check_paper_init(observe(_observe_new_model_weights), "a new AlexNet()")
