"""lit-mnist: a PyTorch Lightning template for image classification, MNIST as the example.

The names below are imported when first used, so `lit-mnist --help`, `--version` and the tools
that read finished runs start without importing torch."""

import importlib

_WHERE = {
    "MLP": "lit_mnist.nets",
    "ConvNet": "lit_mnist.nets",
    "MNISTClassifier": "lit_mnist.model",
    "MNISTDataModule": "lit_mnist.data",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lit_mnist' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
