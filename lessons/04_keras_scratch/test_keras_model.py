"""Graded tests for lesson 04, part 1: AlexNet in Keras and the weight port (tasks 4.1-4.5).

The reference is PyTorch: lesson 03's network is written out here in torch.nn, its weights
ported into your Keras model, and both must give the same logits (float32, inference mode,
max |difference| < 1e-4). Keras arrays are NHWC, torch's NCHW.
"""

import numpy as np
import pytest
import torch
import torchvision  # noqa: F401  (import torch's libraries before TensorFlow's)
from torch import nn

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, expect_shape

ka = learner.load(__file__, "keras_alexnet")
DOCS = "docs/lessons/04_keras_scratch.md"
LAYER_PARAMS = [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 40_970]
TOL = 1e-4


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def torch_paper_alexnet(num_classes=10, norm="lrn") -> nn.Module:
    """Lesson 03's network in plain torch.nn (BatchNorm after every ReLU with norm='batch')."""
    def post(c, first_two):
        if norm == "batch":
            return [nn.BatchNorm2d(c)]
        return [nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if norm == "lrn" \
            and first_two else []

    layers = [nn.Conv2d(3, 96, 11, 4), nn.ReLU(), *post(96, True), nn.MaxPool2d(3, 2),
              nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), *post(256, True), nn.MaxPool2d(3, 2)]
    for cin, cout in ((256, 384), (384, 384), (384, 256)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), *post(cout, False)]
    layers += [nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
               nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes)]  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():  # small weights keep activations in a sane range
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, 0.02)
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, small variances
                m.running_mean.uniform_(-0.05, 0.05)
                m.running_var.uniform_(0.2, 0.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def lrn_reference(a: np.ndarray) -> np.ndarray:
    """The paper's formula over the LAST axis (channels last)."""
    sq = np.pad(a**2, [(0, 0)] * (a.ndim - 1) + [(2, 2)])
    window = sum(sq[..., j : j + a.shape[-1]] for j in range(5))
    return a / (2.0 + 1e-4 * window) ** 0.75


def weighted(model):
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]  # fmt: skip


@pytest.fixture(scope="module")
def model10():
    return ka.build_alexnet(num_classes=10, norm="lrn")


@pytest.mark.task("4.1", points=2)
def test_paper_lrn_layer():
    x = (randn(2, 5, 5, 16) * 30).numpy()
    got = np.asarray(ka.PaperLRN()(x))
    expect_close(got, lrn_reference(x), "PaperLRN against the paper's formula (n=5, k=2, "
                 "alpha=1e-4, beta=0.75)", atol=1e-5, rtol=1e-5,
                 hint="tf.nn.local_response_normalization: depth_radius = n // 2 = 2, and its "
                      "alpha is NOT divided by n", docs=docs("4.1"))  # fmt: skip
    import keras

    expect(isinstance(ka.norm_layer("batch", "bn"), keras.layers.BatchNormalization),
           "norm_layer('batch')", "BatchNormalization", type(ka.norm_layer("batch", "b")),
           docs=docs("4.1"))  # fmt: skip
    with pytest.raises(ValueError):
        ka.norm_layer("group", "g")


@pytest.mark.task("4.2", points=3)
def test_feature_shapes_after_every_block():
    import keras

    x = keras.Input((227, 227, 3))
    shapes = {}
    for layer in ka.conv_blocks("lrn"):
        x = layer(x)
        shapes[layer.name] = tuple(x.shape[1:])
    for name, want in (("pool1", (27, 27, 96)), ("pool2", (13, 13, 256)),
                       ("pool5", (6, 6, 256))):  # fmt: skip
        expect_equal(shapes.get(name), want, f"shape after {name} (H, W, C)",
                     hint="conv1 'valid' stride 4; conv2-5 'same'; max-pool 3/2 'valid'",
                     docs=docs("4.2"))  # fmt: skip


@pytest.mark.task("4.4", points=3)
def test_parameter_counts_equal_pytorchs(model10):
    got = [layer.count_params() for layer in weighted(model10)]
    expect_equal(got, LAYER_PARAMS, "parameters per Conv2D/Dense layer (lesson 03's counts)",
                 docs=docs("4.4"))  # fmt: skip
    expect_equal(model10.count_params(), 58_322_314, "total parameters, 10 classes",
                 docs=docs("4.4"))  # fmt: skip
    expect_shape(model10(nhwc(randn(2, 3, 227, 227)), training=False), (2, 10),
                 "model on (2, 227, 227, 3)", docs=docs("4.4"))  # fmt: skip


@pytest.mark.task("4.4", points=1)
def test_batch_norm_counts_explained():
    bn = ka.build_alexnet(num_classes=10, norm="batch", input_size=67)
    trainable = sum(int(np.prod(v.shape)) for v in bn.trainable_weights)
    moving = sum(int(np.prod(v.shape)) for v in bn.non_trainable_weights)
    bn_channels = 96 + 256 + 384 + 384 + 256
    expect_equal((trainable, moving), (58_322_314 + 2 * bn_channels, 2 * bn_channels),
                 "norm='batch': (trainable, non-trainable) parameters",
                 hint="PyTorch counts BatchNorm's gamma and beta as parameters and keeps the "
                      "running mean and variance as buffers (not parameters); Keras counts "
                      "all four, the moving statistics as non-trainable weights. Same "
                      "network, different bookkeeping.", docs=docs("4.4"))  # fmt: skip


@pytest.mark.task("4.3", points=2)
def test_classifier_layers():
    import keras

    layers = ka.classifier_layers(10, 0.5)
    drops = [layer.rate for layer in layers if isinstance(layer, keras.layers.Dropout)]
    expect_equal(drops, [0.5, 0.5], "classifier dropout rates", docs=docs("4.3"))
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    expect_equal([d.units for d in dense], [4096, 4096, 10], "Dense units", docs=docs("4.3"))
    last = dense[-1].activation.__name__
    expect_equal(last, "linear", "fc8 activation (logits for from_logits=True)",
                 hint="no softmax: the loss takes logits", docs=docs("4.3"))  # fmt: skip


@pytest.mark.task("4.4", points=2)
def test_paper_initialisation(model10):
    stds = [round(float(np.std(layer.kernel.numpy())), 4) for layer in weighted(model10)]
    expect(all(abs(s - 0.01) < 0.0015 for s in stds), "kernel std per layer", [0.01] * 8, stds,
           hint="keras.initializers.RandomNormal(0.0, 0.01)", docs=docs("4.4"))
    biases = []
    for layer in weighted(model10):
        b = layer.bias.numpy()
        biases.append(float(b[0]) if np.all(b == b[0]) else "mixed")
    expect_equal(biases, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0], "bias constant per layer",
                 docs=docs("4.4"))  # fmt: skip


@pytest.mark.task("4.5", points=4)
@pytest.mark.parametrize("norm", ["lrn", "batch"])
def test_port_gives_the_same_logits_as_pytorch(norm):
    tm = torch_paper_alexnet(10, norm)
    km = ka.build_alexnet(num_classes=10, norm=norm)
    ka.port_torch_weights(tm, km)
    x = randn(2, 3, 227, 227, seed=3)
    with torch.no_grad():
        ref = tm(x).numpy()
    got = np.asarray(km(nhwc(x), training=False))
    expect_close(got, ref, f"Keras logits against PyTorch's, norm={norm!r} (same weights, "
                 "inference mode)", atol=TOL,
                 hint="kernels OIHW -> HWIO; fc6's inputs reordered from (C, H, W) to "
                      "(H, W, C); BatchNorm epsilon 1e-5 as in PyTorch", docs=docs("4.5"))


@pytest.mark.task("4.5", points=2)
def test_port_torchvision_alexnet():

    torch.manual_seed(1)
    tv = torchvision.models.alexnet(num_classes=10).eval()
    km = ka.build_torchvision_alexnet(num_classes=10)
    ka.port_torch_weights(tv, km)
    x = randn(2, 3, 224, 224, seed=4)
    with torch.no_grad():
        ref = tv(x).numpy()
    expect_close(np.asarray(km(nhwc(x), training=False)), ref, "torchvision AlexNet ported "
                 "to Keras: logits", atol=TOL, docs=docs("4.5"))  # fmt: skip


@pytest.mark.task("4.5", points=1)
def test_port_at_small_input_size():
    tm = torch_paper_alexnet(10, "lrn")
    km = ka.build_alexnet(num_classes=10, norm="lrn", input_size=67)
    ka.port_torch_weights(tm, km)
    x = randn(2, 3, 67, 67, seed=5)
    with torch.no_grad():
        ref = tm(x).numpy()
    expect_close(np.asarray(km(nhwc(x), training=False)), ref, "logits at 67 px (adaptive "
                 "average pooling to 6x6)", atol=TOL, docs=docs("4.5"))  # fmt: skip


