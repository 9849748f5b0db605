"""Graded tests for lesson 04, part 1: AlexNet in Keras and the weight port (tasks 4.1-4.5).

The reference is PyTorch: lesson 03's network is written out here in torch.nn, its weights
ported into your Keras model, and both must give the same logits (float32, inference mode,
max |difference| < 1e-4). Keras arrays are NHWC, torch's NCHW.

Each test has two halves: an ``_observe_*`` function that builds your layers and returns
data only (layer kinds in order, their weights, their outputs on inputs made here), and the
test itself, which checks that data. Where your outputs are compared with a reference, the
weights are chosen HERE (seeded, with the paper's shapes) and set into your Conv2D / Dense
layers first, and the reference is computed from those same weights: your outputs must be
what the network computes, whatever your own initial weights. Layers are found by their
Keras type and their order, never by their names.
"""

import functools

import numpy as np
import pytest
import torch
import torchvision  # noqa: F401  (import torch's libraries before TensorFlow's)
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from alexnet_course.grading import learner
from alexnet_course.grading.checks import (
    expect,
    expect_close,
    expect_equal,
    expect_raises,
    expect_shape,
    observed,
)
from alexnet_course.grading.draws import drawn
from alexnet_course.grading.remote import observe

ka = learner.load(__file__, "keras_alexnet")
DOCS = "docs/lessons/04_keras_scratch.md"
LAYER_PARAMS = [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 40_970]
TOL = 1e-4
BN_EPSILON, BN_MOMENTUM = 1e-5, 0.9  # PyTorch's BatchNorm defaults, in Keras's convention
DROP_PROBE = (4, 5000)  # a dropout layer's output on ones of this shape, in training mode
BIG = 2_000_000  # weight arrays larger than this come back as a sample (fc6, fc7 kernels)
PICKS = np.random.default_rng(7).integers(0, 2**62, 20_000)  # the sampled flat positions


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def _torch_paper_layers(num_classes=10, norm="lrn") -> list:
    """Lesson 03's network as a list of plain torch.nn layers (BatchNorm after every ReLU with
    norm='batch'): the structure of the torch model the port tests hand to your port."""

    def post(c, first_two):
        if norm == "batch":
            return [nn.BatchNorm2d(c)]
        lrn = norm == "lrn" and first_two
        return [nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if lrn else []

    out = [nn.Conv2d(3, 96, 11, 4), nn.ReLU(), *post(96, True), nn.MaxPool2d(3, 2),
           nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), *post(256, True), nn.MaxPool2d(3, 2)]  # fmt: skip
    for cin, cout in ((256, 384), (384, 384), (384, 256)):
        out += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), *post(cout, False)]
    return out + [nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
                  nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
                  nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes)]  # fmt: skip


def torch_paper_alexnet(num_classes=10, norm="lrn") -> nn.Module:
    """Lesson 03's network in plain torch.nn with this file's seeded weights: the reference
    of the port tests."""
    torch.manual_seed(0)
    model = nn.Sequential(*_torch_paper_layers(num_classes, norm)).eval()
    with torch.no_grad():  # small weights keep activations in a sane range
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, 0.02)
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, means apart from
                m.running_mean.uniform_(0.1, 0.3)  # variances: a port that swaps them
                m.running_var.uniform_(0.6, 1.5)  # computes something else
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def drawn_weights(shapes: list, seed: int, first_gain: float = 1.0) -> list:
    """(kernel, bias) arrays in Keras's shapes (HWIO / (in, out)), drawn here from ``seed``:
    He-scaled normal kernels (std sqrt(2 / fan_in), which keeps activations about the size of
    the input; the first layer's ``first_gain`` times larger), N(0, 1) biases."""
    rng = np.random.default_rng(seed)
    out = []
    for i, shape in enumerate(shapes):
        scale = (first_gain if i == 0 else 1.0) * np.sqrt(2 / np.prod(shape[:-1]))
        out.append(((rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)),
                    rng.standard_normal(shape[-1], dtype=np.float32)))  # fmt: skip
    return out


CONV_KERNELS = [(11, 11, 3, 96), (5, 5, 96, 256), (3, 3, 256, 384), (3, 3, 384, 384),
                (3, 3, 384, 256)]  # fmt: skip


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def lrn_reference(a: np.ndarray) -> np.ndarray:
    """The paper's formula over the LAST axis (channels last)."""
    sq = np.pad(a**2, [(0, 0)] * (a.ndim - 1) + [(2, 2)])
    window = sum(sq[..., j : j + a.shape[-1]] for j in range(5))
    return a / (2.0 + 1e-4 * window) ** 0.75


def reference_features(x: np.ndarray, convs: list, norm: str = "lrn", bns=None) -> np.ndarray:
    """The paper's feature extractor in TensorFlow ops (NHWC), with the given (kernel, bias)
    pairs: conv1 'valid' stride 4, conv2-5 'same', ReLU, the norm, max-pool 3/2 'valid'. LRN
    follows conv1 and conv2; BatchNorm (``bns``: gamma, beta, moving mean and variance per
    convolution, inference mode, epsilon 1e-5) every convolution."""
    import tensorflow as tf

    def conv(h, kb, stride, pad):
        return tf.nn.relu(tf.nn.conv2d(h, kb[0], stride, pad) + kb[1])

    def post(h, i):
        if norm == "lrn":
            return tf.nn.local_response_normalization(h, 2, 2.0, 1e-4, 0.75) if i < 2 else h
        if norm == "batch":
            gamma, beta, mean, var = (tf.constant(a, tf.float32) for a in bns[i])
            return gamma * (h - mean) / tf.sqrt(var + 1e-5) + beta
        return h

    def pool(h):
        return tf.nn.max_pool2d(h, 3, 2, "VALID")

    h = pool(post(conv(tf.constant(x), convs[0], 4, "VALID"), 0))
    h = pool(post(conv(h, convs[1], 1, "SAME"), 1))
    for i, kb in enumerate(convs[2:5], 2):
        h = post(conv(h, kb, 1, "SAME"), i)
    return pool(h).numpy()


def batch_norm_params(seed: int) -> list:
    """Per convolution: gamma, beta, moving mean and variance, away from their initial values
    (a mean above zero: a norm before the ReLU would pass no negative value)."""
    rng = np.random.default_rng(seed)
    return [[rng.uniform(0.5, 1.5, c).astype("float32"), rng.uniform(-0.5, 0.5, c).astype("float32"),
             rng.uniform(0.0, 1.0, c).astype("float32"), rng.uniform(0.5, 2.0, c).astype("float32")]
            for c in (96, 256, 384, 384, 256)]  # fmt: skip


# ---------------------------------------------------------------- observe halves' helpers
def _data(obj):
    """A layer's config reduced to plain data (nested dicts, lists, numbers, strings)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_data(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _data(v) for k, v in obj.items()}
    return repr(obj)[:200]


def _kind(layer) -> str:
    """The Keras class a layer is (or derives from): 'Conv2D', 'Dense', 'MaxPooling2D',
    'BatchNormalization', 'Dropout', ... ('Layer' for a layer written from scratch)."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("keras."):
            return cls.__name__
    return type(layer).__name__


def _describe(layers, picks=None) -> list[dict]:
    """Each layer's kind, class, name, config and weights. With ``picks`` (flat positions
    chosen by the test), an array over BIG values comes back as its shape and its values at
    those positions (modulo its size) instead of whole."""

    def arr(w):
        w = np.asarray(w)
        if picks is None or w.size <= BIG:
            return w
        at = np.asarray(picks, np.int64) % w.size
        return {"shape": tuple(int(d) for d in w.shape), "at": at, "values": w.reshape(-1)[at]}

    return [{"kind": _kind(layer), "class": type(layer).__name__, "name": str(layer.name),
             "config": _data(layer.get_config()),
             "weights": [arr(v.numpy()) for v in layer.weights]}
            for layer in layers]  # fmt: skip


def _set_weights(layers, kind: str, arrays) -> dict:
    """Set the test's [kernel, bias] ``arrays`` into the layers of Keras type ``kind``, in
    order, when every shape matches; the shapes found (and whether they went in) come back."""
    found = [layer for layer in layers if _kind(layer) == kind]
    shapes = [[tuple(int(d) for d in w.shape) for w in layer.weights] for layer in found]
    out = {"weight_shapes": shapes, "loaded": False}
    if shapes == [[tuple(np.shape(a)) for a in pair] for pair in arrays]:
        for layer, pair in zip(found, arrays):
            layer.set_weights([np.asarray(a) for a in pair])
        out["loaded"] = True
    return out


def _dropout_probes(layers) -> list:
    """Each Dropout layer's output on ones, in training mode: its rate, measured."""
    ones = np.ones(DROP_PROBE, "float32")
    return [np.asarray(layer(ones, training=True)) for layer in layers
            if _kind(layer) == "Dropout"]  # fmt: skip


# ---------------------------------------------------------------- checking helpers
def shape_of(w) -> tuple:
    return tuple(w["shape"]) if isinstance(w, dict) else tuple(np.shape(w))


def values_of(w) -> np.ndarray:
    """All of an array's values, or the sample of a big one."""
    return np.asarray(w["values"]) if isinstance(w, dict) else np.asarray(w).reshape(-1)


def of_kind(layers: list[dict], kind: str) -> list[dict]:
    return [layer for layer in layers if layer["kind"] == kind]


def expect_finite_close(got, want, what: str, **kw) -> None:
    got = np.asarray(got, dtype=np.float64)
    expect(got.shape != np.shape(want) or bool(np.all(np.isfinite(got))), f"{what}: values",
           "finite numbers", f"{int(np.sum(~np.isfinite(got)))} NaN or inf values",
           hint=kw.get("hint"), docs=kw.get("docs"))  # fmt: skip
    expect_close(got, want, what, **kw)


def expect_loaded(o: dict, arrays, kind: str, what: str, task: str) -> None:
    """The test's weights went into your layers of ``kind``: their weight shapes matched."""
    want = [[tuple(np.shape(a)) for a in pair] for pair in arrays]
    expect(o["loaded"], f"{what}: weight shapes of the {kind} layers, in order (where this test "
           "sets its own weights)", want, o["weight_shapes"],
           hint=f"every {kind} layer with a kernel and a bias, the paper's sizes",
           docs=docs(task))  # fmt: skip


def expect_dropout_rates(probes: list, rates: list, what: str, docs: str) -> None:
    """Measured rates (share of zeros) and scaling (1 / (1 - rate)) of dropout probes."""
    measured = [round(float(np.mean(np.asarray(p) == 0)), 3) for p in probes]
    expect(len(probes) == len(rates) and all(abs(m - r) < 0.02 for m, r in zip(measured, rates)),
           f"{what}: share of activations each Dropout layer zeroes in training mode",
           rates, measured, hint="keras.layers.Dropout(rate): the rate is the share dropped",
           docs=docs)  # fmt: skip
    for p, r in zip(probes, rates):
        kept = np.asarray(p)[np.asarray(p) != 0]
        expect_close(kept, np.full(kept.shape, 1 / (1 - r)), f"{what}: kept activations "
                     "(scaled by 1 / (1 - rate))", atol=1e-5, docs=docs)  # fmt: skip


# ---------------------------------------------------------------- 4.1
def _observe_lrn(x):
    return np.asarray(ka.PaperLRN()(x))


def _observe_norm_layer(norm, name, x, small_var=None):
    layer = ka.norm_layer(norm, name)
    out = {"kind": _kind(layer), "name": str(layer.name),
           "inference": np.asarray(layer(x, training=False))}  # fmt: skip
    if out["kind"] == "BatchNormalization":
        out["before"] = [np.asarray(w) for w in layer.get_weights()]
        if small_var is not None and len(out["before"]) == 4:  # the test's moving variance
            layer.set_weights([*out["before"][:3], np.asarray(small_var, np.float32)])
            out["small_var"] = np.asarray(layer(x, training=False))
        layer(x, training=True)
        out["after"] = [np.asarray(w) for w in layer.get_weights()]
    return out


@pytest.mark.task("4.1", points=2)
def test_paper_lrn_layer():
    x = (randn(2, 5, 5, 16) * 30).numpy()
    got = observed(_observe_lrn, x, what="PaperLRN()(x) on a (2, 5, 5, 16) input",
                   docs=docs("4.1"))  # fmt: skip
    expect_finite_close(got, lrn_reference(x), "PaperLRN against the paper's formula (n=5, "
                        "k=2, alpha=1e-4, beta=0.75)", atol=1e-5, rtol=1e-5,
                        hint="tf.nn.local_response_normalization: its depth_radius is n // 2 "
                             "(not n), and its alpha is NOT divided by n", docs=docs("4.1"))  # fmt: skip
    # moving variances of 1e-6 to 1e-4, where epsilon weighs: 1e-5 against, say, 2e-5
    small_var = np.geomspace(1e-6, 1e-4, 16)
    bn = observed(_observe_norm_layer, "batch", "bn", x, small_var, what="norm_layer('batch', "
                  "'bn') on a (2, 5, 5, 16) input", docs=docs("4.1"))  # fmt: skip
    expect_equal(bn["kind"], "BatchNormalization", "norm_layer('batch', 'bn'): the layer's "
                 "Keras type", docs=docs("4.1"))  # fmt: skip
    expect_equal(bn["name"], "bn", "norm_layer('batch', 'bn'): the layer's name",
                 docs=docs("4.1"))  # fmt: skip
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn["before"])
    want = (x - mean) / np.sqrt(var + BN_EPSILON) * gamma + beta
    expect_finite_close(bn["inference"], want, "norm_layer('batch') in inference mode, fresh "
                        "statistics (mean 0, variance 1)", atol=1e-6, rtol=1e-5,
                        hint="epsilon 1e-5 as in PyTorch (Keras's default is 1e-3)",
                        docs=docs("4.1"))  # fmt: skip
    want = (x - mean) / np.sqrt(small_var + BN_EPSILON) * gamma + beta
    expect_finite_close(bn.get("small_var"), want, "norm_layer('batch') in inference mode, "
                        "moving variances of 1e-6 to 1e-4 set by this test", atol=1e-3,
                        rtol=1e-4, hint="epsilon 1e-5 as in PyTorch: with variances this "
                        "small, epsilon decides the scale", docs=docs("4.1"))  # fmt: skip
    moved = BN_MOMENTUM * mean + (1 - BN_MOMENTUM) * x.mean(axis=(0, 1, 2))
    expect_finite_close(bn["after"][2], moved, "norm_layer('batch'): moving mean after one "
                        "call in training mode", atol=1e-5, rtol=1e-5,
                        hint="momentum 0.9 (Keras keeps 0.9 of the old statistic; PyTorch's "
                             "momentum 0.1 is the share of the new one); Keras's default is "
                             "0.99", docs=docs("4.1"))  # fmt: skip
    for norm, name in (("none", "n0"), ("lrn", "n1")):
        o = observed(_observe_norm_layer, norm, name, x, what=f"norm_layer({norm!r}, {name!r}) "
                     "on an input", docs=docs("4.1"))  # fmt: skip
        want = x if norm == "none" else lrn_reference(x)
        expect_equal(o["name"], name, f"norm_layer({norm!r}, {name!r}): the layer's name",
                     docs=docs("4.1"))  # fmt: skip
        expect_finite_close(o["inference"], want, f"norm_layer({norm!r}) on an input",
                            atol=1e-5, rtol=1e-5, hint="'none' is the identity, 'lrn' a "
                            "PaperLRN", docs=docs("4.1"))  # fmt: skip
    expect_raises(ValueError, lambda: observe(_observe_norm_layer, "group", "g", x),
                  "norm_layer('group', 'g'): an unknown norm",
                  hint="raise ValueError naming the allowed norms", docs=docs("4.1"))  # fmt: skip


# ---------------------------------------------------------------- 4.2
def _observe_conv_blocks(norm, convs, x, bns=None):
    import keras

    blocks = ka.conv_blocks(norm)
    inp = h = keras.Input(tuple(x.shape[1:]))
    shapes = []
    for layer in blocks:
        h = layer(h)
        shapes.append(tuple(int(d) for d in h.shape[1:]))
    o = {"layers": _describe(blocks), "shapes": shapes, **_set_weights(blocks, "Conv2D", convs)}
    if bns is not None:
        o["bn"] = _set_weights(blocks, "BatchNormalization", bns)
        o["loaded"] = o["loaded"] and o["bn"]["loaded"]
    if o["loaded"]:
        o["out"] = np.asarray(keras.Model(inp, h)(x, training=False))
    return o


@pytest.mark.task("4.2", points=3)
def test_feature_shapes_after_every_block():
    x = nhwc(randn(1, 3, 227, 227, seed=2))
    # conv1's kernels 20 times He's: the activations LRN sees are in the tens, where its
    # alpha visibly matters
    convs = drawn_weights(CONV_KERNELS, seed=2, first_gain=20.0)
    o = observed(_observe_conv_blocks, "lrn", convs, x, what="conv_blocks('lrn') applied in "
                 "order to a (1, 227, 227, 3) input", hint="a list of Keras layers; conv1 'valid' "
                 "stride 4, conv2-5 'same'", docs=docs("4.2"))  # fmt: skip
    kinds = [layer["kind"] for layer in o["layers"]]
    pools = [s for s, k in zip(o["shapes"], kinds) if k == "MaxPooling2D"]
    expect_equal(pools, [(27, 27, 96), (13, 13, 256), (6, 6, 256)], "shape (H, W, C) after "
                 "each MaxPooling2D layer, in order, for a 227x227 input",
                 hint="conv1 'valid' stride 4; conv2-5 'same'; three max-pools 3/2 'valid'; "
                      f"your layers in order: {kinds}", docs=docs("4.2"))  # fmt: skip
    convs_found = of_kind(o["layers"], "Conv2D")
    expect_equal([tuple(c["weights"][0].shape) for c in convs_found], CONV_KERNELS,
                 "Conv2D kernel shapes (kh, kw, in, out), in order", docs=docs("4.2"))  # fmt: skip
    expect_loaded(o, convs, "Conv2D", "conv_blocks('lrn')", "4.2")
    want = reference_features(x, convs, "lrn")
    expect_finite_close(o["out"], want, "conv_blocks('lrn') output on a 227x227 image, with "
                        "this test's weights in your convolutions, against conv, ReLU, LRN after "
                        "conv1 and conv2, max-pool, recomputed with the same weights",
                        atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=1e-4,
                        hint="order per block: convolution, ReLU, then the norm, then the "
                             "pool", docs=docs("4.2"))  # fmt: skip


@pytest.mark.task("4.2", points=1)
def test_conv_blocks_with_batch_norm():
    """norm='batch': BatchNorm after the ReLU of every convolution, checked with this test's
    own statistics and scales in your BatchNormalization layers."""
    x = nhwc(randn(1, 3, 227, 227, seed=5))
    convs = drawn_weights(CONV_KERNELS, seed=5)
    bns = batch_norm_params(seed=5)
    o = observed(_observe_conv_blocks, "batch", convs, x, bns, what="conv_blocks('batch') "
                 "applied in order to a (1, 227, 227, 3) input", docs=docs("4.2"))  # fmt: skip
    expect(o["bn"]["loaded"], "conv_blocks('batch'): the BatchNormalization layers' weight "
           "shapes, in order (where this test sets its own)", [[(c,)] * 4 for c in
           (96, 256, 384, 384, 256)], o["bn"]["weight_shapes"], hint="one BatchNormalization "
           "after every convolution (five), each over that convolution's channels",
           docs=docs("4.2"))  # fmt: skip
    expect_loaded(o, convs, "Conv2D", "conv_blocks('batch')", "4.2")
    want = reference_features(x, convs, "batch", bns)
    expect_finite_close(o["out"], want, "conv_blocks('batch') output on a 227x227 image, with "
                        "this test's weights in your convolutions and BatchNorm layers (inference "
                        "mode), against conv, ReLU, BatchNorm after every convolution, max-pool, "
                        "recomputed with the same weights",
                        atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=1e-4,
                        hint="order per block: convolution, ReLU, then the norm, then the "
                             "pool", docs=docs("4.2"))  # fmt: skip


# ---------------------------------------------------------------- 4.3
def _observe_classifier(num_classes, dropout, dense, x):
    import keras

    layers = ka.classifier_layers(num_classes, dropout)
    model = keras.Sequential([keras.Input(tuple(x.shape[1:])), *layers])
    o = {"layers": _describe(layers), "drops": _dropout_probes(layers),
         **_set_weights(layers, "Dense", dense)}  # fmt: skip
    if o["loaded"]:
        o["out"] = np.asarray(model(x, training=False))
    return o


@pytest.mark.task("4.3", points=2)
def test_classifier_layers():
    x = nhwc(randn(2, 4, 2, 2, seed=6))  # 16 features: a small fc6, the same head
    dense = drawn_weights([(16, 4096), (4096, 4096), (4096, 10)], seed=6)
    o = observed(_observe_classifier, 10, 0.3, dense, x, what="classifier_layers(10, 0.3) "
                 "applied in order to a (2, 2, 2, 4) input", docs=docs("4.3"))  # fmt: skip
    expect_dropout_rates(o["drops"], [0.3, 0.3], "classifier_layers(10, dropout=0.3)",
                         docs("4.3"))  # fmt: skip
    order = [layer["kind"] for layer in o["layers"] if layer["kind"] in ("Flatten", "Dropout", "Dense")]
    expect_equal(order, ["Flatten", "Dropout", "Dense", "Dropout", "Dense", "Dense"],
                 "classifier_layers(10, 0.3): its Flatten, Dropout and Dense layers, in order",
                 hint="each Dropout comes BEFORE a hidden Dense layer (fc6, fc7): it drops that "
                 "layer's inputs; none after fc7", docs=docs("4.3"))  # fmt: skip
    found = of_kind(o["layers"], "Dense")
    expect_equal([d["weights"][0].shape[1] for d in found], [4096, 4096, 10], "Dense units",
                 docs=docs("4.3"))  # fmt: skip
    expect_loaded(o, dense, "Dense", "classifier_layers(10, 0.3)", "4.3")
    h = x.reshape(2, -1).astype(np.float64)
    for i, (kernel, bias) in enumerate(dense):
        h = h @ kernel.astype(np.float64) + bias
        h = np.maximum(h, 0) if i < 2 else h
    expect_finite_close(o["out"], h, "classifier output in inference mode, with this test's "
                        "weights in your Dense layers, against fc6 ReLU, fc7 ReLU, fc8 logits "
                        "recomputed with the same weights",
                        atol=1e-4 * max(1.0, float(np.abs(h).max())), rtol=1e-4,
                        hint="no softmax on fc8: the loss takes logits (from_logits=True)",
                        docs=docs("4.3"))  # fmt: skip


def _observe_classifier_any(cases):
    import keras

    seen = []
    for num_classes, dropout, dense, x in cases:
        layers = ka.classifier_layers(num_classes, dropout)
        model = keras.Sequential([keras.Input(tuple(x.shape[1:])), *layers])
        o = _set_weights(layers, "Dense", dense)
        if o["loaded"]:
            o["out"] = np.asarray(model(x, training=False))
        seen.append(o)
        del model, layers
    return seen


@functools.lru_cache(maxsize=1)
def _hidden_dense() -> list:
    """fc6 (from 16 features) and fc7: the same for every drawn head."""
    return drawn_weights([(16, 4096), (4096, 4096)], seed=6)


@pytest.mark.task("4.3", points=1)
@drawn(examples=2)
@given(num_classes=st.integers(1, 30).filter(lambda k: k != 10), dropout=st.floats(0.0, 0.9),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_classifier_layers_any_number_of_classes(num_classes, dropout, seed):
    x = nhwc(randn(2, 4, 2, 2, seed=seed))
    dense = [*_hidden_dense(), *drawn_weights([(4096, num_classes)], seed=seed)]
    call = f"classifier_layers({num_classes}, {dropout:.3g})"
    (o,) = observed(_observe_classifier_any, [(num_classes, dropout, dense, x)],
                    what=f"{call} applied in order to a (2, 2, 2, 4) input", docs=docs("4.3"))
    expect_loaded(o, dense, "Dense", f"{call} (its last Dense layer has num_classes units: the "
                  "argument's value, whatever it is; 10 is only CIFAR-10's)", "4.3")
    h = x.reshape(2, -1).astype(np.float64)
    for i, (kernel, bias) in enumerate(dense):
        h = h @ kernel.astype(np.float64) + bias
        h = np.maximum(h, 0) if i < 2 else h
    expect_finite_close(o["out"], h, f"{call}: output in inference mode, with this test's "
                        "weights in your Dense layers, against fc6 ReLU, fc7 ReLU, fc8 logits "
                        "recomputed with the same weights",
                        atol=1e-4 * max(1.0, float(np.abs(h).max())), rtol=1e-4,
                        hint="no softmax on fc8: the loss takes logits (from_logits=True)",
                        docs=docs("4.3"))  # fmt: skip


# ---------------------------------------------------------------- 4.4
def _observe_alexnet(num_classes, norm, input_size, x, picks):
    given = {k: v for k, v in (("norm", norm), ("input_size", input_size)) if v is not None}
    model = ka.build_alexnet(num_classes=num_classes, **given)  # the rest: its defaults
    out = np.asarray(model(x, training=False))
    return {"layers": _describe(model.layers, picks), "out": out,
            "input_shape": tuple(model.input_shape)[1:], "drops": _dropout_probes(model.layers)}  # fmt: skip


@functools.lru_cache(maxsize=1)
def alexnet10() -> dict:
    """build_alexnet(num_classes=10) with its defaults (norm='lrn', 227 px, dropout 0.5) as
    data (cached: two tests read it)."""
    return observed(_observe_alexnet, 10, None, None, nhwc(randn(2, 3, 227, 227)), PICKS,
                    what="build_alexnet(num_classes=10), its defaults (norm 'lrn', 227 px), on "
                         "a (2, 227, 227, 3) input", docs=docs("4.4"))  # fmt: skip


@pytest.mark.task("4.4", points=3)
def test_parameter_counts_equal_pytorchs():
    o = alexnet10()
    weighted = [layer for layer in o["layers"] if layer["kind"] in ("Conv2D", "Dense")]
    got = [sum(int(np.prod(shape_of(w))) for w in layer["weights"]) for layer in weighted]
    expect_equal(got, LAYER_PARAMS, "parameters per Conv2D/Dense layer (lesson 03's counts)",
                 docs=docs("4.4"))  # fmt: skip
    total = sum(int(np.prod(shape_of(w))) for layer in o["layers"] for w in layer["weights"])
    expect_equal(total, 58_322_314, "total parameters, 10 classes", docs=docs("4.4"))
    expect_shape(o["out"], (2, 10), "model on (2, 227, 227, 3)", docs=docs("4.4"))
    expect_equal(o["input_shape"], (227, 227, 3), "the input shape (H, W, C) of "
                 "build_alexnet(num_classes=10), input_size left at its default",
                 hint="the default input_size is the paper's 227 px", docs=docs("4.4"))  # fmt: skip


def _observe_weight_shapes(norm, input_size):
    model = ka.build_alexnet(num_classes=10, norm=norm, input_size=input_size)
    return {"trainable": [tuple(int(d) for d in v.shape) for v in model.trainable_weights],
            "non_trainable": [tuple(int(d) for d in v.shape) for v in model.non_trainable_weights]}  # fmt: skip


@pytest.mark.task("4.4", points=1)
def test_batch_norm_counts_explained():
    o = observed(_observe_weight_shapes, "batch", 67, what="build_alexnet(num_classes=10, "
                 "norm='batch', input_size=67)", docs=docs("4.4"))  # fmt: skip
    trainable = sum(int(np.prod(s)) for s in o["trainable"])
    moving = sum(int(np.prod(s)) for s in o["non_trainable"])
    bn_channels = 96 + 256 + 384 + 384 + 256
    expect_equal((trainable, moving), (58_322_314 + 2 * bn_channels, 2 * bn_channels),
                 "norm='batch': (trainable, non-trainable) parameters",
                 hint="PyTorch counts BatchNorm's gamma and beta as parameters and keeps the "
                      "running mean and variance as buffers (not parameters); Keras counts "
                      "all four, the moving statistics as non-trainable weights. Same "
                      "network, different bookkeeping. BatchNorm must stay trainable.",
                 docs=docs("4.4"))  # fmt: skip
    # the third norm the page allows: no normalisation layer, so no weights of its own
    o = observed(_observe_weight_shapes, "none", 67, what="build_alexnet(num_classes=10, "
                 "norm='none', input_size=67)", docs=docs("4.4"))  # fmt: skip
    expect_equal((sum(int(np.prod(s)) for s in o["trainable"]), len(o["non_trainable"])),
                 (58_322_314, 0), "norm='none': (trainable parameters, non-trainable weights)",
                 hint="norm='none' builds the same network with no normalisation layer",
                 docs=docs("4.4"))  # fmt: skip


@pytest.mark.task("4.4", points=2)
def test_paper_initialisation():
    o = alexnet10()
    weighted = [layer for layer in o["layers"] if layer["kind"] in ("Conv2D", "Dense")]
    stds = [round(float(np.std(values_of(layer["weights"][0]))), 4) for layer in weighted]
    expect(len(stds) == 8 and all(abs(s - 0.01) < 0.0015 for s in stds),
           "kernel std per Conv2D/Dense layer", [0.01] * 8, stds,
           hint="kernels drawn from N(0, 0.01): the given paper_init", docs=docs("4.4"))  # fmt: skip
    means = [round(float(np.mean(values_of(layer["weights"][0]))), 4) for layer in weighted]
    expect(len(means) == 8 and all(abs(m) < 0.001 for m in means),
           "kernel mean per Conv2D/Dense layer", [0.0] * 8, means,
           hint="kernels drawn from N(0, 0.01), centred on 0: the given paper_init",
           docs=docs("4.4"))  # fmt: skip
    biases = []
    for layer in weighted:
        b = layer["weights"][1]
        biases.append(float(b[0]) if np.all(b == b[0]) else "mixed")
    expect_equal(biases, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0], "bias constant per layer",
                 docs=docs("4.4"))  # fmt: skip
    expect_dropout_rates(o["drops"], [0.5, 0.5], "build_alexnet(num_classes=10) with its "
                         "default dropout (the paper's 0.5)", docs("4.4"))  # fmt: skip


# ---------------------------------------------------------------- 4.5
def port_source(variant: str, norm: str | None) -> nn.Module:
    """The torch network a port test hands to your port_torch_weights, with this file's
    seeded weights: lesson 03's (``"paper"``) or torchvision's. Made where your code runs and
    again here for the reference, so no copy of its 58 M weights travels between the two
    (0.5 GB less at once, #30)."""
    if variant == "torchvision":
        torch.manual_seed(1)
        return torchvision.models.alexnet(num_classes=10).eval()
    return torch_paper_alexnet(10, norm)


def _observe_port(variant, norm, input_size, x, picks):
    import keras

    tm = port_source(variant, norm)
    if variant == "torchvision":
        km = ka.build_torchvision_alexnet(num_classes=10, input_size=input_size)
    else:
        km = ka.build_alexnet(num_classes=10, norm=norm, input_size=input_size)
    ported = ka.port_torch_weights(tm, km)
    km = ported if isinstance(ported, keras.Model) else km
    return {"layers": _describe(km.layers, picks), "out": np.asarray(km(nhwc(x), training=False)),
            "drops": _dropout_probes(km.layers) if variant == "torchvision" else []}  # fmt: skip


def ported_values(w: np.ndarray, sources, sampled: bool) -> np.ndarray:
    """The Keras kernel a torch weight ports to (flat), or its values at PICKS (modulo its
    size) when ``sampled``. ``sources`` None: a convolution; else the dense rows' sources."""
    if sources is None:
        flat = w.transpose(2, 3, 1, 0).reshape(-1)
        return flat[PICKS % flat.size] if sampled else flat
    if not sampled:
        return w[:, sources].T.reshape(-1)
    row, col = np.divmod(PICKS % w.size, w.shape[0])
    return w[col, sources[row]]


def expect_ported_weights(layers: list[dict], tm: nn.Module, what: str) -> None:
    """Each torch Conv2d / Linear / BatchNorm2d against the Keras layer of that kind at the
    same place in order: kernels OIHW -> HWIO, dense (out, in) -> (in, out), BatchNorm
    [gamma, beta, moving mean, moving variance]."""
    kinds = {nn.Conv2d: "Conv2D", nn.Linear: "Dense", nn.BatchNorm2d: "BatchNormalization"}
    t_layers = [m for m in tm.modules() if type(m) in kinds]
    k_layers = [layer for layer in layers if layer["kind"] in kinds.values()]
    expect_equal([layer["kind"] for layer in k_layers], [kinds[type(m)] for m in t_layers],
                 f"{what}: Keras Conv2D / Dense / BatchNormalization layers, in order",
                 docs=docs("4.5"))  # fmt: skip
    first_dense = True
    for i, (t, k) in enumerate(zip(t_layers, k_layers)):
        where = f"{what}: Keras layer {k['name']!r} ({k['kind']} number {i + 1})"
        if isinstance(t, nn.BatchNorm2d):
            names = ["gamma", "beta", "moving mean", "moving variance"]
            want = [t.weight, t.bias, t.running_mean, t.running_var]
            hint = "gamma <- weight, beta <- bias, moving mean/variance <- running_mean/var"
        else:
            w = t.weight.detach().numpy()
            if isinstance(t, nn.Conv2d):
                want_shape, sources = (*w.shape[2:], w.shape[1], w.shape[0]), [None]
            else:  # a Dense kernel row i holds torch's input column sources[i]
                want_shape, sources = (w.shape[1], w.shape[0]), [np.arange(w.shape[1])]
                if first_dense and w.shape[1] % 36 == 0:  # fc6: (C, H, W) -> (H, W, C)
                    i = np.arange(w.shape[1])
                    sources.insert(0, (i % (w.shape[1] // 36)) * 36 + i // (w.shape[1] // 36))
                first_dense = False
            got = k["weights"][0] if k["weights"] else None
            ok = got is not None and shape_of(got) == want_shape and any(
                np.array_equal(values_of(got), ported_values(w, src, sampled=isinstance(got, dict)))
                for src in sources)  # fmt: skip
            expect(ok, f"{where}: kernel after the port", f"the torch weight, shape "
                   f"{want_shape}: convolutions OIHW -> HWIO, dense (out, in) -> (in, out)",
                   None if got is None else f"shape {shape_of(got)}"
                   + (", different values" if shape_of(got) == want_shape else ""),
                   hint="convolutions: permute the axes; dense kernels: transpose (fc6: its "
                        "inputs reordered to (H, W, C) first)", docs=docs("4.5"))  # fmt: skip
            names, want, hint = ["bias"], [t.bias], "the bias is copied as it is"
            k = {**k, "weights": k["weights"][1:]}
        for j, (name, v) in enumerate(zip(names, want)):
            got = k["weights"][j] if j < len(k["weights"]) else None
            v = v.detach().numpy()
            expect(got is not None and got.shape == v.shape and np.array_equal(got, v),
                   f"{where}: {name} after the port", "the torch layer's value",
                   "missing" if got is None else "different values", hint=hint,
                   docs=docs("4.5"))  # fmt: skip


PORT_HINT = ("set_weights takes arrays in Keras's shapes: HWIO convolution kernels, (in, out) "
             "dense kernels, BatchNorm [gamma, beta, moving mean, moving variance]; pair the "
             "layers by kind, in order")  # fmt: skip


def port_check(norm: str, input_size: int, seed: int) -> None:
    x = randn(2, 3, input_size, input_size, seed=seed)
    o = observed(_observe_port, "paper", norm, input_size, x, PICKS,
                 what=f"port_torch_weights(lesson 03's network, build_alexnet(10, {norm!r}, "
                 f"{input_size}))", hint=PORT_HINT, docs=docs("4.5"))  # fmt: skip
    tm = port_source("paper", norm)
    with torch.no_grad():
        ref = tm(x).numpy()
    expect_finite_close(o["out"], ref, f"Keras logits against PyTorch's, norm={norm!r}, "
                        f"{input_size} px (same weights, inference mode)", atol=TOL,
                        hint="kernels OIHW -> HWIO; fc6's inputs reordered from (C, H, W) to "
                             "(H, W, C); BatchNorm epsilon 1e-5 as in PyTorch, its moving "
                             "mean from running_mean and moving variance from running_var",
                        docs=docs("4.5"))  # fmt: skip
    expect_ported_weights(o["layers"], tm, f"norm={norm!r}")


@pytest.mark.task("4.5", points=4)
@pytest.mark.parametrize("norm", ["lrn", "batch"])
def test_port_gives_the_same_logits_as_pytorch(norm):
    port_check(norm, 227, seed=3)


@pytest.mark.task("4.5", points=2)
def test_port_torchvision_alexnet():
    x = randn(2, 3, 224, 224, seed=4)
    o = observed(_observe_port, "torchvision", None, 224, x, PICKS,
                 what="port_torch_weights(torchvision's alexnet, build_torchvision_alexnet(10))",
                 hint=PORT_HINT, docs=docs("4.5"))  # fmt: skip
    tv = port_source("torchvision", None)
    with torch.no_grad():
        ref = tv(x).numpy()
    expect_finite_close(o["out"], ref, "torchvision AlexNet ported to Keras: logits",
                        atol=TOL, docs=docs("4.5"))  # fmt: skip
    expect_ported_weights(o["layers"], tv, "torchvision variant")
    rates = [m.p for m in tv.modules() if isinstance(m, nn.Dropout)]
    expect_dropout_rates(o["drops"], rates, "build_torchvision_alexnet() (given: torchvision's "
                         "dropout)", docs("4.5"))  # fmt: skip


@pytest.mark.task("4.5", points=1)
def test_port_at_small_input_size():
    # 99 px: the last max-pool leaves 2x2 features, which the given AdaptiveAvgPool2D spreads
    # over 6x6 in overlapping windows, as PyTorch's AdaptiveAvgPool2d does
    port_check("lrn", 99, seed=5)
