"""Correct implementations in styles the reference does not use, one list per lesson: each
is (name, learner file, [(exact text in the solution, replacement), ...], graded test
file). Learners wrote each of these and were once marked down for it; the lesson's graded
suite must give every one full marks (tests/test_lessons.py checks that), while the
typical mistakes in tests/mutants.py still fail."""

FUNCTIONAL_HEAD = '''
    class Head(nn.Module):  # dropout as a function inside a custom head
        def __init__(self):
            super().__init__()
            self.fc6 = nn.Linear(256 * 6 * 6, 4096)
            self.fc7 = nn.Linear(4096, 4096)
            self.fc8 = nn.Linear(4096, num_classes)

        def forward(self, x):
            x = F.relu(self.fc6(F.dropout(x, dropout, self.training)))
            x = F.relu(self.fc7(F.dropout(x, dropout, self.training)))
            return self.fc8(x)

    return Head()
'''

ALTERNATIVES = {
    "02_torch_pretrained": [
        # 2.4: parameters told apart by identity with `is` instead of id()
        ("head_told_apart_with_is", "pretrained.py",
         [("p.requires_grad and id(p) not in head_ids", "p.requires_grad and not any(p is h for h in head)")],
         "test_pretrained.py"),
        # 2.5: the samples counted from each batch's images, gradients cleared after the step
        ("finetune_counts_images_clears_after_step", "pretrained.py",
         [("            optimizer.zero_grad(set_to_none=True)\n", ""),
          ("            optimizer.step()\n            total += loss.item() * len(y)\n            seen += len(y)\n",
           "            optimizer.step()\n            optimizer.zero_grad()\n"
           "            total += float(loss) * x.shape[0]\n            seen += x.shape[0]\n")],
         "test_pretrained.py"),
        # 2.4: momentum (and lr) set in each group's dict, SGD's own defaults left alone
        ("momentum_per_group", "pretrained.py",
         [('    groups = [{"params": head, "lr": lr}]\n    if backbone:\n'
           '        groups.append({"params": backbone, "lr": backbone_lr})\n'
           '    return torch.optim.SGD(groups, lr=lr, momentum=momentum)\n',
           '    groups = [{"params": head, "lr": lr, "momentum": momentum}]\n    if backbone:\n'
           '        groups.append({"params": backbone, "lr": backbone_lr, "momentum": momentum})\n'
           '    return torch.optim.SGD(groups)\n')],
         "test_pretrained.py"),
    ],
    "03_torch_scratch": [
        # 3.9: `is None` for the default loss, the confusion matrix and per-class accuracy
        # counted in Python loops
        ("evaluate_in_loops", "train.py",
         [("    loss_fn = loss_fn or nn.CrossEntropyLoss()\n    device = model_device(model)\n    model.eval()",
           "    if loss_fn is None:\n        loss_fn = nn.CrossEntropyLoss()\n"
           "    device = model_device(model)\n    model.eval()"),
          ("        pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()\n"
           "        confusion += torch.bincount(pairs, minlength=num_classes**2).view(num_classes, -1)\n"
           "    cm = confusion.numpy()\n    rows = cm.sum(1)\n"
           "    with np.errstate(invalid=\"ignore\", divide=\"ignore\"):\n"
           "        per_class = np.where(rows > 0, np.diag(cm) / rows, np.nan)\n",
           "        for t, p in zip(labels.tolist(), logits.argmax(1).tolist()):\n"
           "            confusion[t, p] += 1\n    cm = confusion.numpy()\n"
           "    per_class = np.full(num_classes, float(\"nan\"))\n    for c in range(num_classes):\n"
           "        if cm[c].sum():\n            per_class[c] = cm[c, c] / cm[c].sum()\n")],
         "test_train.py"),
        # 3.8 (and so 3.10): each step's forward and loss under bf16 autocast, as the page's
        # mixed-precision note allows; fit's tests then compare with a reference under it too
        ("train_one_epoch_autocast_bf16", "train.py",
         [("        optimizer.zero_grad(set_to_none=True)\n        logits = model(images)\n"
           "        loss = loss_fn(logits, labels)\n        loss.backward()\n",
           "        optimizer.zero_grad(set_to_none=True)\n"
           "        with torch.autocast(device.type, dtype=torch.bfloat16):\n"
           "            logits = model(images)\n            loss = loss_fn(logits, labels)\n"
           "        loss.backward()\n")],
         "test_train.py"),
        # 3.8/3.9: model.forward(images) called directly, which skips forward hooks (the
        # tests record each forward inside it instead), with each step under bf16 autocast
        ("forward_called_directly", "train.py",
         [("        optimizer.zero_grad(set_to_none=True)\n        logits = model(images)\n"
           "        loss = loss_fn(logits, labels)\n        loss.backward()\n",
           "        optimizer.zero_grad(set_to_none=True)\n"
           "        with torch.autocast(device.type, dtype=torch.bfloat16):\n"
           "            logits = model.forward(images)\n            loss = loss_fn(logits, labels)\n"
           "        loss.backward()\n"),
          ("        logits = model(images)\n        total_loss +=",
           "        logits = model.forward(images)\n        total_loss +=")],
         "test_train.py"),
        # 3.9: batches moved as images in channels_last layout (task 3.11's advice), so the
        # tests' id batches are 4-D; the head's Linear layers called through .forward()
        ("evaluate_channels_last_head_forward", "train.py",
         [("        logits = model(images)\n        total_loss +=",
           "        logits = model(images.contiguous(memory_format=torch.channels_last))\n"
           "        total_loss +=")],
         "test_train.py"),
        ("linear_layers_called_through_forward", "alexnet.py",
         [("    return nn.Sequential(\n        nn.Dropout(p=dropout),\n        nn.Linear(256 * 6 * 6, 4096),\n"
           "        nn.ReLU(inplace=True),\n        nn.Dropout(p=dropout),\n        nn.Linear(4096, 4096),\n"
           "        nn.ReLU(inplace=True),\n        nn.Linear(4096, num_classes),\n    )\n",
           "    import torch.nn.functional as F\n"
           + FUNCTIONAL_HEAD.replace("self.fc6(", "self.fc6.forward(").replace("self.fc7(", "self.fc7.forward(")
           .replace("self.fc8(x)", "self.fc8.forward(x)"))],
         "test_model.py"),
        # 3.10: the checkpoint's epoch counted from 1 (the page allows either)
        ("fit_epoch_one_based", "train.py",
         [('{"epoch": epoch, "val_accuracy"', '{"epoch": epoch + 1, "val_accuracy"')],
         "test_train.py"),
        # 3.5: F.dropout(x, p, self.training) in a custom head instead of nn.Dropout modules
        ("dropout_functional_custom_head", "alexnet.py",
         [("    return nn.Sequential(\n        nn.Dropout(p=dropout),\n        nn.Linear(256 * 6 * 6, 4096),\n"
           "        nn.ReLU(inplace=True),\n        nn.Dropout(p=dropout),\n        nn.Linear(4096, 4096),\n"
           "        nn.ReLU(inplace=True),\n        nn.Linear(4096, num_classes),\n    )\n",
           "    import torch.nn.functional as F\n" + FUNCTIONAL_HEAD)],
         "test_model.py"),
        # 3.6/3.7: the classifier registered before the features (model.modules() then
        # visits fc6-fc8 first); the tests take the Conv2d layers first, then the Linear ones
        ("classifier_registered_first", "alexnet.py",
         [("        self.features = nn.Sequential(\n"
           "            conv1_block(config.norm), conv2_block(config.norm), conv3_to_5(config.norm)\n"
           "        )\n        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))\n"
           "        self.classifier = classifier(config.num_classes, config.dropout)\n",
           "        self.classifier = classifier(config.num_classes, config.dropout)\n"
           "        self.features = nn.Sequential(\n"
           "            conv1_block(config.norm), conv2_block(config.norm), conv3_to_5(config.norm)\n"
           "        )\n        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))\n"),
          ("    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]\n",
           "    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]\n"
           "    layers += [m for m in model.modules() if isinstance(m, nn.Linear)]\n")],
         "test_model.py"),
    ],
    "01_data": [
        # 1.4: resized in float64, then cast back: nearer the exact result than float32 is
        ("resize_in_float64", "data.py",
         [("    return F.interpolate(x, size=(size, size), mode=\"bilinear\", align_corners=False,\n"
           "                         antialias=False)  # fmt: skip\n",
           "    y = F.interpolate(x.double(), size=(size, size), mode=\"bilinear\", align_corners=False)\n"
           "    return y.to(x.dtype)\n")],
         "test_data.py"),
        # 1.5: a loop over the images, flip drawn before the offsets, column offset first
        ("augment_loop_flip_first", "data.py",
         [("    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)\n"
           "    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)\n"
           "    rows = (oy[:, None] + torch.arange(h))[:, :, None]\n"
           "    cols = (ox[:, None] + torch.arange(w))[:, None, :]\n"
           "    out = padded[torch.arange(n)[:, None, None], rows, cols]  # (N, H, W, C)\n"
           "    flip = torch.rand(n, generator=generator) < 0.5\n"
           "    return torch.where(flip[:, None, None, None], out.flip(2), out)\n",
           "    out = torch.empty_like(images)\n"
           "    for i in range(n):\n"
           "        flip = bool(torch.rand(1, generator=generator) < 0.5)\n"
           "        ox, oy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()\n"
           "        window = padded[i, oy : oy + h, ox : ox + w]\n"
           "        out[i] = window.flip(1) if flip else window\n"
           "    return out\n")],
         "test_data.py"),
        # 1.3: statistics made with x.new_tensor (x's dtype and device), broadcast by indexing
        ("normalize_new_tensor", "data.py",
         [("    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)\n"
           "    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)\n"
           "    return (x - m) / s\n",
           "    return (x - x.new_tensor(mean)[:, None, None]) / x.new_tensor(std)[:, None, None]\n")],
         "test_data.py"),
        # 1.6: rng.choice per class, and of equally large classes the one with the larger
        # label adjusted first (the page leaves ties open)
        ("split_choice_ties_by_larger_label", "data.py",
         [('order = np.argsort(-counts, kind="stable")', "order = np.lexsort((-classes, -counts))"),
          ("val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]",
           "val = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)")],
         "test_data.py"),
        # 1.8: pyplot's state machine, one subplot per image (no spare panels), uint8 images
        ("grid_with_pyplot_subplots", "data.py",
         [("    n = len(shown)\n    nrows = -(-n // ncols)\n"
           "    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols, nrows), dpi=100, squeeze=False)\n"
           "    for i, ax in enumerate(axes.flat):\n        ax.axis(\"off\")\n        if i < n:\n"
           "            ax.imshow(shown[i])\n            ax.set_title(classes[int(labels[i])], fontsize=7)\n"
           "    fig.savefig(path, dpi=100)\n    plt.close(fig)\n",
           "    nrows = (len(shown) + ncols - 1) // ncols\n"
           "    fig = plt.figure(figsize=(ncols, nrows), dpi=100)\n"
           "    for i, img in enumerate(shown):\n"
           "        plt.subplot(nrows, ncols, i + 1)\n"
           "        plt.imshow((img * 255).round().astype(np.uint8))\n"
           "        plt.title(classes[labels[i]], fontsize=6)\n"
           "        plt.axis(\"off\")\n"
           "    plt.savefig(path)\n    plt.close(fig)\n")],
         "test_data.py"),
    ],
    "05_analysis": [
        # 5.3: a Figure made without pyplot, saved at 80 dpi (its lines under two pixels wide)
        ("curves_figure_without_pyplot_at_80_dpi", "analysis.py",
         [("    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))\n",
           "    from matplotlib.figure import Figure\n\n"
           "    fig = Figure(figsize=(10, 4))\n    ax_loss, ax_acc = fig.subplots(1, 2)\n"),
          ("    fig.savefig(path)\n", "    fig.savefig(path, dpi=80)\n")],
         "test_analysis.py"),
        # 5.3: the figure closed once saved (lesson 01 warns that open figures pile up)
        ("curves_closed_after_saving", "analysis.py",
         [("    fig.savefig(path)\n    return fig\n", "    fig.savefig(path)\n    plt.close(fig)\n    return fig\n")],
         "test_analysis.py"),
        # 5.4: a ValueError of its own (a subclass is a ValueError)
        ("gain_raises_a_valueerror_subclass", "analysis.py",
         [('            raise ValueError(f"{arm} did not run: no result to compare")',
           '            raise type("ArmDidNotRun", (ValueError,), {})(f"{arm} did not run: no result to compare")')],
         "test_analysis.py"),
        # 5.1: counted with bincount; NaN rows through np.divide(where=)
        ("metrics_bincount_and_divide_where", "analysis.py",
         [("    cm = np.zeros((num_classes, num_classes), dtype=np.int64)\n"
           "    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)\n    return cm\n",
           "    codes = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)\n"
           "    return np.bincount(codes, minlength=num_classes**2).reshape(num_classes, num_classes)\n"),
          ("    with np.errstate(invalid=\"ignore\", divide=\"ignore\"):\n"
           "        return np.where(rows > 0, np.diag(cm) / rows, np.nan)\n",
           "    return np.divide(np.diag(cm), rows, out=np.full(len(rows), np.nan), where=rows > 0)\n")],
         "test_analysis.py"),
        # 5.2: sorted with reverse=True, the arms that did not run named by their status
        ("table_reverse_sorted", "analysis.py",
         [('key=lambda r: -r["test_accuracy"])', 'key=lambda r: r["test_accuracy"], reverse=True)'),
          ('rest = [r for r in results if r.get("status") != "ok"]',
           'rest = [r for r in results if r["status"] in ("skipped", "failed")]')],
         "test_analysis.py"),
        # 5.3: saved at another dpi and cropped to its content (bbox_inches="tight")
        ("curves_saved_tight_at_150_dpi", "analysis.py",
         [("    fig.savefig(path)\n", '    fig.savefig(path, dpi=150, bbox_inches="tight")\n')],
         "test_analysis.py"),
        # 5.3: both lines in one plot call, named by the legend's texts (no label=)
        ("curves_named_by_the_legend", "analysis.py",
         [('    ax_loss.plot(epochs, h["train_loss"], label="train")\n'
           '    ax_loss.plot(epochs, h["val_loss"], label="val")\n'
           '    ax_acc.plot(epochs, h["train_accuracy"], label="train")\n'
           '    ax_acc.plot(epochs, h["val_accuracy"], label="val")\n',
           '    ax_loss.plot(epochs, h["train_loss"], epochs, h["val_loss"])\n'
           '    ax_acc.plot(epochs, h["train_accuracy"], epochs, h["val_accuracy"])\n'),
          ("        ax.legend()", '        ax.legend(["train", "val"])')],
         "test_analysis.py"),
        # 5.5: the arms checked before the gain is asked for, instead of catching its error
        ("analysis_checks_the_arms_first", "analysis.py",
         [("    try:\n        gain = (", "    ran = {r['arm'] for r in ok}\n"
           "    if {'torch-pretrained', 'torch-tv-scratch'} <= ran:\n        gain = ("),
          ("    except ValueError as e:  # an arm did not run: no number to report\n"
           "        gain = (f\"What pretraining buys was not measured in this comparison ({e}): it needs \"",
           "    else:\n        missing = sorted({'torch-pretrained', 'torch-tv-scratch'} - ran)\n"
           "        gain = (f\"What pretraining buys was not measured: {', '.join(missing)} did not run; it needs \"")],
         "test_analysis.py"),
    ],
    "04_keras_scratch": [
        # 4.6: the loss called with Keras's argument names, the default made with `is None`
        ("loss_called_by_name", "keras_train.py",
         [("    loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)\n",
           "    if loss_fn is None:\n"
           "        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)\n"),
          ("            loss = loss_fn(y, logits)\n", "            loss = loss_fn(y_true=y, y_pred=logits)\n")],
         "test_keras_train.py"),
        # 4.8: TensorFlow's confusion matrix summed over batches, np.divide with where=
        ("evaluate_tf_confusion_matrix", "keras_train.py",
         [("    cm = np.zeros((num_classes, num_classes), dtype=np.int64)\n    for x, y in ds:\n"
           "        pred = np.argmax(model(x, training=False), axis=1)\n"
           "        np.add.at(cm, (np.asarray(y), pred), 1)\n    rows = cm.sum(1)\n"
           "    with np.errstate(invalid=\"ignore\", divide=\"ignore\"):\n"
           "        per_class = np.where(rows > 0, np.diag(cm) / rows, np.nan)\n",
           "    cm = tf.zeros((num_classes, num_classes), dtype=tf.int32)\n    for x, y in ds:\n"
           "        pred = tf.argmax(model(x, training=False), axis=1)\n"
           "        cm += tf.math.confusion_matrix(y, pred, num_classes=num_classes, dtype=tf.int32)\n"
           "    cm = cm.numpy().astype(np.int64)\n    rows = cm.sum(1)\n"
           "    per_class = np.divide(np.diag(cm), rows, out=np.full(num_classes, np.nan), where=rows > 0)\n")],
         "test_keras_train.py"),
        # 4.2: pooling layers named maxpool{i} (no page names them)
        ("pools_named_maxpool", "keras_alexnet.py",
         [('name="pool1"', 'name="maxpool1"'), ('name="pool2"', 'name="maxpool2"'),
          ('name="pool5"', 'name="maxpool5"')],
         "test_keras_model.py"),
        # 4.6: norm layers named batch{i}
        ("norms_named_batch", "keras_alexnet.py",
         [('norm_layer(norm, "norm1")', 'norm_layer(norm, "batch1")'),
          ('norm_layer(norm, "norm2")', 'norm_layer(norm, "batch2")'),
          ('name=f"norm{i}"', 'name=f"batch{i}"')],
         "test_keras_model.py"),
        # 4.7: a one-argument schedule, as the stub's Callable[[int], float] allows
        ("schedule_one_argument", "keras_train.py",
         [("def schedule(epoch: int, lr: float | None = None) -> float:",
           "def schedule(epoch: int) -> float:")],
         "test_keras_train.py"),
    ],
}
