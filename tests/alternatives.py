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
    "05_analysis": [
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
