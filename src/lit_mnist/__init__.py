"""lit-mnist: a PyTorch Lightning template for image classification, MNIST as the example."""

from lit_mnist.data import MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import MLP, ConvNet

__all__ = ["MLP", "ConvNet", "MNISTClassifier", "MNISTDataModule"]
