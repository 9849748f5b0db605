"""Lesson 04's Keras AlexNet with its two 4096-unit layers narrowed, for the few tests
whose subject is not the model's width and whose process would otherwise pass the suite's
2.5 GB (#30): at full width a Keras model holds 58M weights, their gradients and momentum."""

from __future__ import annotations

WIDTH = 512


def narrowed(model, module, width: int = WIDTH):
    """The same layers, with every 4096-unit Dense layer ``width`` units wide (freshly
    initialised; ``module`` holds the model's own layer classes)."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        layer.pop("build_config", None)  # input shapes come from the Input again
        if layer["class_name"] == "Dense" and layer["config"]["units"] == 4096:
            layer["config"]["units"] = width
    return keras.Sequential.from_config(config, custom_objects=vars(module))
