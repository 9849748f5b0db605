"""Graded tests for lesson 03, part 1: the AlexNet model (tasks 3.1 - 3.7).

Run them with ``pytest lessons/03_torch_scratch`` (one task: ``pytest -m task3_2 ...``).
Every check compares with a reference written out inside this file from the paper's
formulas, using YOUR layers' weights, so a mismatch is a real difference in what the network
computes. Inputs are drawn on the CPU from a fixed seed.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_course.device import seed_everything
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, expect_shape

alexnet = learner.load(__file__, "alexnet")
DOCS = "docs/lessons/03_torch_scratch.md"
ATOL = 1e-5  # float32, same operations in the same order: differences are rounding only
PAPER_LRN = {"n": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75}  # section 3.3
LAYER_PARAMS = [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 40_970]


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def lrn_reference(a: torch.Tensor, n=5, k=2.0, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """The paper's formula: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta."""
    sq = F.pad(a.pow(2), (0, 0, 0, 0, n // 2, n // 2))  # zero channels beyond the edges
    window = sum(sq[:, j : j + a.shape[1]] for j in range(n))
    return a / (k + alpha * window).pow(beta)


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def randn(*shape, scale=1.0, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def reference_conv(x, conv, stride=1, padding=0):
    return F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding)


def reference_features(x, convs, norm="lrn"):
    """The paper's feature extractor, written with functional ops and the given convs."""
    post = lrn_reference if norm == "lrn" else (lambda t: t)
    x = F.max_pool2d(post(F.relu(reference_conv(x, convs[0], stride=4))), 3, 2)
    x = F.max_pool2d(post(F.relu(reference_conv(x, convs[1], padding=2))), 3, 2)
    for conv in convs[2:5]:
        x = F.relu(reference_conv(x, conv, padding=1))
    return F.max_pool2d(x, 3, 2)


def reference_classifier(x, linears):
    x = F.relu(F.linear(x, linears[0].weight, linears[0].bias))
    x = F.relu(F.linear(x, linears[1].weight, linears[1].bias))
    return F.linear(x, linears[2].weight, linears[2].bias)


def expect_param_counts(module, expected, what, task):
    got = [sum(p.numel() for p in m.parameters()) for m in weighted_layers(module)]
    expect_equal(got, expected, f"{what}: parameters per Conv2d/Linear layer, in order",
                 hint="count weights (out * in * kh * kw) plus one bias per output",
                 docs=docs(task))  # fmt: skip


@pytest.fixture(scope="module")
def model10():
    seed_everything(0)
    return alexnet.AlexNet(num_classes=10)


# ---------------------------------------------------------------- Task 3.1: LRN and the switch
@pytest.mark.task("3.1", points=2)
def test_paper_lrn_matches_the_papers_formula():
    layer = alexnet.paper_lrn()
    x = randn(2, 16, 5, 5, scale=30.0)  # large activations, so alpha visibly matters
    expect_close(layer(x), lrn_reference(x), "paper_lrn() against the paper's formula "
                 "(n=5, k=2, alpha=1e-4, beta=0.75)", atol=1e-5, rtol=1e-5,
                 hint="torch's LocalResponseNorm divides alpha by size: pass alpha=5e-4 to get "
                      "the paper's 1e-4", docs=docs("3.1"))  # fmt: skip


@pytest.mark.task("3.1", points=1)
def test_norm_layer_switch():
    x = randn(2, 8, 4, 4, scale=20.0)
    lrn = alexnet.norm_layer("lrn", 8)
    expect_close(lrn(x), lrn_reference(x), "norm_layer('lrn', 8)", atol=1e-5, rtol=1e-5,
                 docs=docs("3.1"))  # fmt: skip
    bn = alexnet.norm_layer("batch", 8)
    expect(isinstance(bn, nn.BatchNorm2d) and bn.num_features == 8,
           "norm_layer('batch', 8)", "BatchNorm2d(8)", repr(bn), docs=docs("3.1"))
    none = alexnet.norm_layer("none", 8)
    expect_close(none(x), x, "norm_layer('none', 8) must pass its input through", atol=0,
                 docs=docs("3.1"))  # fmt: skip
    with pytest.raises(ValueError):
        alexnet.norm_layer("layer", 8)


# ---------------------------------------------------------------- Task 3.2: conv1
@pytest.mark.task("3.2", points=2)
@pytest.mark.parametrize("norm", ["lrn", "none"])
def test_conv1_block_shape_and_values(norm):
    seed_everything(1)
    block = alexnet.conv1_block(norm).eval()
    convs = weighted_layers(block)
    expect_equal(len(convs), 1, "conv1_block: number of Conv2d layers", docs=docs("3.2"))
    x = randn(2, 3, 227, 227)
    out = block(x)
    expect_shape(out, (2, 96, 27, 27), "conv1_block on (2, 3, 227, 227)",
                 hint="conv 11x11 stride 4 gives 55x55; the max-pool 3/2 gives 27x27",
                 docs=docs("3.2"))  # fmt: skip
    post = lrn_reference if norm == "lrn" else (lambda t: t)
    ref = F.max_pool2d(post(F.relu(reference_conv(x, convs[0], stride=4))), 3, 2)
    expect_close(out, ref, f"conv1_block({norm!r}) against conv -> ReLU -> "
                 f"{'LRN' if norm == 'lrn' else 'no norm'} -> max-pool 3/2", atol=ATOL,
                 hint="check the order (ReLU before LRN), the stride, the pool's kernel and "
                      "stride (3 and 2: overlapping pooling)", docs=docs("3.2"))  # fmt: skip


@pytest.mark.task("3.2", points=1)
def test_conv1_block_parameters():
    expect_param_counts(alexnet.conv1_block("lrn"), [34_944], "conv1_block", "3.2")


# ---------------------------------------------------------------- Task 3.3: conv2
@pytest.mark.task("3.3", points=2)
def test_conv2_block_shape_values_and_parameters():
    seed_everything(2)
    block = alexnet.conv2_block("lrn").eval()
    expect_param_counts(block, [614_656], "conv2_block", "3.3")
    x = F.relu(randn(2, 96, 27, 27, scale=3.0))
    out = block(x)
    expect_shape(out, (2, 256, 13, 13), "conv2_block on (2, 96, 27, 27)",
                 hint="padding 2 keeps 27x27; the max-pool 3/2 gives 13x13", docs=docs("3.3"))
    ref = F.max_pool2d(lrn_reference(F.relu(reference_conv(x, weighted_layers(block)[0],
                                                           padding=2))), 3, 2)  # fmt: skip
    expect_close(out, ref, "conv2_block('lrn') against conv 5x5 pad 2 -> ReLU -> LRN -> "
                 "max-pool 3/2", atol=ATOL, docs=docs("3.3"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.4: conv3 - conv5
@pytest.mark.task("3.4", points=2)
def test_conv3_to_5_shape_values_and_parameters():
    seed_everything(3)
    block = alexnet.conv3_to_5("lrn").eval()
    expect_param_counts(block, [885_120, 1_327_488, 884_992], "conv3_to_5", "3.4")
    x = F.relu(randn(2, 256, 13, 13))
    out = block(x)
    expect_shape(out, (2, 256, 6, 6), "conv3_to_5 on (2, 256, 13, 13)",
                 hint="3x3 convolutions with padding 1 keep 13x13; the pool 3/2 gives 6x6",
                 docs=docs("3.4"))  # fmt: skip
    ref = x
    for conv in weighted_layers(block):
        ref = F.relu(reference_conv(ref, conv, padding=1))
    ref = F.max_pool2d(ref, 3, 2)
    expect_close(out, ref, "conv3_to_5('lrn') against three conv 3x3 pad 1 + ReLU, then "
                 "max-pool 3/2 (the paper has no LRN here)", atol=ATOL,
                 docs=docs("3.4"))  # fmt: skip


@pytest.mark.task("3.4", points=1)
def test_conv3_to_5_batch_norm_variant():
    block = alexnet.conv3_to_5("batch")
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    expect_equal([b.num_features for b in bns], [384, 384, 256],
                 "conv3_to_5('batch'): BatchNorm2d layers (num_features)", docs=docs("3.4"))
    expect_shape(block.eval()(randn(1, 256, 13, 13)), (1, 256, 6, 6), "conv3_to_5('batch')")


# ---------------------------------------------------------------- Task 3.5: classifier
@pytest.mark.task("3.5", points=2)
def test_classifier_shape_values_and_parameters():
    seed_everything(4)
    head = alexnet.classifier(10, 0.5)
    expect_param_counts(head, [37_752_832, 16_781_312, 40_970], "classifier(10)", "3.5")
    x = randn(4, 9216)
    head.eval()
    out = head(x)
    expect_shape(out, (4, 10), "classifier on (4, 9216)", docs=docs("3.5"))
    expect_close(out, reference_classifier(x, weighted_layers(head)),
                 "classifier in eval mode against Linear-ReLU-Linear-ReLU-Linear (logits)",
                 atol=ATOL, hint="no softmax at the end: CrossEntropyLoss takes logits",
                 docs=docs("3.5"))  # fmt: skip


@pytest.mark.task("3.5", points=1)
def test_classifier_dropout_only_in_training():
    head = alexnet.classifier(10, 0.5)
    drops = [m.p for m in head.modules() if isinstance(m, nn.Dropout)]
    expect_equal(drops, [0.5, 0.5], "classifier: dropout layers (p)", docs=docs("3.5"))
    x = randn(3, 9216)
    head.train()
    torch.manual_seed(0)
    a = head(x)
    b = head(x)
    expect(not torch.allclose(a, b), "classifier in train mode: two passes", "different "
           "(dropout is random)", "identical", docs=docs("3.5"))  # fmt: skip
    head.eval()
    expect_close(head(x), head(x), "classifier in eval mode: two passes", atol=0,
                 docs=docs("3.5"))  # fmt: skip


# ---------------------------------------------------------------- Task 3.6: the network
@pytest.mark.task("3.6", points=2)
def test_alexnet_shapes_and_parameter_counts(model10):
    model10.eval()
    for name in ("features", "avgpool", "classifier"):
        expect(hasattr(model10, name), f"AlexNet has a '{name}' block", name, "missing",
               docs=docs("3.6"))  # fmt: skip
    expect_param_counts(model10, LAYER_PARAMS, "AlexNet(num_classes=10)", "3.6")
    total = sum(p.numel() for p in model10.parameters())
    expect_equal(total, 58_322_314, "AlexNet(num_classes=10): total parameters",
                 docs=docs("3.6"))  # fmt: skip
    x = randn(2, 3, 227, 227)
    with torch.no_grad():
        feats = model10.features(x)
        expect_shape(feats, (2, 256, 6, 6), "model.features on (2, 3, 227, 227)",
                     docs=docs("3.6"))  # fmt: skip
        expect_shape(model10(x), (2, 10), "AlexNet on (2, 3, 227, 227)", docs=docs("3.6"))


@pytest.mark.task("3.6", points=1)
def test_alexnet_1000_classes():
    model = alexnet.AlexNet(num_classes=1000)
    total = sum(p.numel() for p in model.parameters())
    expect_equal(total, 62_378_344, "AlexNet(num_classes=1000): total parameters",
                 docs=docs("3.6"))  # fmt: skip


@pytest.mark.task("3.6", points=3)
def test_alexnet_forward_matches_reference(model10):
    model10.eval()
    layers = weighted_layers(model10)
    x = randn(2, 3, 227, 227, seed=7)
    with torch.no_grad():
        ref = reference_classifier(torch.flatten(reference_features(x, layers), 1), layers[5:])
        out = model10(x)
    expect_close(out, ref, "AlexNet forward (eval mode) against the paper's network with your "
                 "weights", atol=1e-4, rtol=1e-4,
                 hint="features -> avgpool -> torch.flatten(x, 1) -> classifier; logits, no "
                      "softmax", docs=docs("3.6"))  # fmt: skip


@pytest.mark.task("3.6", points=1)
def test_alexnet_dropout_only_in_training(model10):
    x = randn(2, 3, 227, 227, seed=8)
    with torch.no_grad():
        model10.train()
        torch.manual_seed(0)
        a, b = model10(x), model10(x)
        expect(not torch.allclose(a, b), "AlexNet in train mode: two passes", "different",
               "identical (is dropout in the classifier?)", docs=docs("3.6"))  # fmt: skip
        model10.eval()
        expect_close(model10(x), model10(x), "AlexNet in eval mode: two passes", atol=0,
                     docs=docs("3.6"))  # fmt: skip


@pytest.mark.task("3.6", points=2)
def test_alexnet_norm_switch():
    seed_everything(5)
    bn = alexnet.AlexNet(num_classes=10, norm="batch")
    kinds = [type(m).__name__ for m in bn.modules() if isinstance(m, (nn.BatchNorm2d,
                                                                      nn.LocalResponseNorm))]  # fmt: skip
    expect_equal(kinds, ["BatchNorm2d"] * 5, "AlexNet(norm='batch'): normalisation layers",
                 hint="BatchNorm2d after conv1 and conv2 (where LRN was) and after conv3-5",
                 docs=docs("3.6"))  # fmt: skip
    plain = alexnet.AlexNet(num_classes=10, norm="none").eval()
    x = randn(1, 3, 227, 227, seed=9)
    layers = weighted_layers(plain)
    with torch.no_grad():
        ref = reference_classifier(torch.flatten(reference_features(x, layers, "none"), 1),
                                   layers[5:])  # fmt: skip
        expect_close(plain(x), ref, "AlexNet(norm='none') forward", atol=1e-4, rtol=1e-4,
                     docs=docs("3.6"))  # fmt: skip
    with pytest.raises((ValueError, TypeError)):
        alexnet.AlexNet(num_classes=10, norm="group")


# ---------------------------------------------------------------- Task 3.7: initialisation
@torch.no_grad()
def _check_paper_init(model, what):
    layers = weighted_layers(model)
    stds = [round(float(m.weight.std()), 4) for m in layers]
    means = [float(m.weight.mean()) for m in layers]
    expect(all(abs(s - 0.01) < 0.0015 for s in stds) and all(abs(m) < 2e-3 for m in means),
           f"{what}: weight std per layer (paper: N(0, 0.01))", [0.01] * 8, stds,
           hint="nn.init.normal_(w, mean=0.0, std=0.01) for every Conv2d and Linear",
           docs=docs("3.7"))  # fmt: skip
    biases = []
    for m in layers:
        b = m.bias.detach()
        biases.append(float(b[0]) if torch.all(b == b[0]) else "mixed")
    expect_equal(biases, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                 f"{what}: bias constant per layer (conv1..conv5, fc6, fc7, fc8)",
                 hint="1 in conv2, conv4, conv5 and the hidden fully connected layers",
                 docs=docs("3.7"))  # fmt: skip


@pytest.mark.task("3.7", points=2)
def test_init_paper_weights():
    seed_everything(6)
    model = alexnet.AlexNet(num_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)  # scramble, so that only init_paper_weights can fix it
    returned = alexnet.init_paper_weights(model)
    expect(returned is model, "init_paper_weights returns the model", "the same model",
           type(returned).__name__, docs=docs("3.7"))  # fmt: skip
    _check_paper_init(model, "init_paper_weights(model)")


@pytest.mark.task("3.7", points=1)
def test_alexnet_is_initialised_like_the_paper(model10):
    _check_paper_init(model10, "a new AlexNet()")
