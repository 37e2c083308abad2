"""Plain networks, built for the images a datamodule describes (`DataSpec`: channels, height,
width, number of classes). Each splits into `features` and `classifier`, the two parameter groups.

A net of your own takes the spec as its first argument: `MyNet(data: DataSpec, ...)`, and is named
on the command line as `--model.net=my_package.MyNet`.

Any other nn.Module class or factory is a net too (`StockNet`): torchvision.models classes and
functions, `timm.create_model`, a class of your own that knows nothing of the template. Its number
of classes and input channels come from the data where its constructor takes them and they are
left at their defaults; a first convolution made for RGB reads gray images otherwise.
"""

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lit_mnist.data import DataSpec
from lit_mnist.errors import ParameterError
from lit_mnist.optim import head_of


class ConvNet(nn.Module):
    """The seed CNN: conv32-conv64 (3x3, each followed by ReLU and 2x2 max-pool), fc128, then one
    output per class.

    Args:
        data: the images it reads.
        channels: output channels of each stage; every stage ends in a 2x2 max-pool.
        hidden: width of the hidden fully connected layer.
        batch_norm: batch norm after every convolution and the hidden layer.
        dropout: dropout before each fully connected layer.
        convs_per_stage: 3x3 convolutions per stage (1 in the seed CNN); 2 makes a VGG-style net.
    """

    def __init__(
        self,
        data: DataSpec,
        channels: tuple[int, ...] = (32, 64),
        hidden: int = 128,
        batch_norm: bool = False,
        dropout: float = 0.0,
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        pooled = min(data.height, data.width) >> len(channels)
        if not channels or min(channels) < 1 or pooled < 1:
            raise ParameterError(
                self, "channels", f"must name 1 or more stages of at least 1 channel, each halving the "
                f"{data.height}x{data.width} image, got {list(channels)}",
            )  # fmt: skip
        for name, value in (("hidden", hidden), ("convs_per_stage", convs_per_stage)):
            if value < 1:
                raise ParameterError(self, name, f"must be at least 1, got {value}")
        if not 0 <= dropout < 1:
            raise ParameterError(self, "dropout", f"must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        in_channels = data.channels
        for out_channels in channels:
            for _ in range(convs_per_stage):
                # A conv bias is redundant right before batch norm, which has its own shift.
                layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out_channels))
                layers.append(nn.ReLU(inplace=True))
                in_channels = out_channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        flat = in_channels * (data.height >> len(channels)) * (data.width >> len(channels))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, hidden),
            nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, data.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A fully connected baseline: every pixel -> hidden layers -> one output per class."""

    def __init__(self, data: DataSpec, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ParameterError(self, "dropout", f"must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = data.channels * data.height * data.width
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, data.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# the recurrent layers RNN builds, by its `cell` argument
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNN(nn.Module):
    """A recurrent classifier that reads an image row by row: each of the `height` rows (its
    `channels * width` pixels) is one time step, and the last layer's final hidden state (both
    directions' when bidirectional) goes to one linear layer with one output per class.

    Args:
        data: the images it reads.
        cell: rnn (tanh), lstm or gru.
        hidden: hidden size of each layer (and direction).
        layers: stacked recurrent layers.
        bidirectional: read the rows top-down and bottom-up.
        dropout: dropout between stacked layers and before the classifier.
    """

    def __init__(
        self,
        data: DataSpec,
        cell: str = "rnn",
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ParameterError(self, "cell", f"must be one of {', '.join(CELLS)}, got {cell!r}")
        for name, value in (("hidden", hidden), ("layers", layers)):
            if value < 1:
                raise ParameterError(self, name, f"must be at least 1, got {value}")
        if not 0 <= dropout < 1:
            raise ParameterError(self, "dropout", f"must be in [0, 1), got {dropout}")
        self.directions = 2 if bidirectional else 1
        self.features = CELLS[cell](
            input_size=data.channels * data.width,
            hidden_size=hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden * self.directions, data.num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        rows = x.permute(0, 2, 1, 3).flatten(2)  # (N, C, H, W) -> (N, H, C * W): a row per step
        _, state = self.features(rows)
        final = state[0] if isinstance(state, tuple) else state  # an LSTM's (h, c)
        last_layer = final[-self.directions :]  # (directions, N, hidden)
        return self.classifier(last_layer.transpose(0, 1).flatten(1))


# Constructor arguments the data fills, when a stock net takes them and they are left at their defaults.
FROM_DATA: dict[str, Callable[[DataSpec], int]] = {
    "num_classes": lambda data: data.num_classes,
    "in_chans": lambda data: data.channels,  # timm
    "in_channels": lambda data: data.channels,
}
# Arguments that load pretrained weights, and the value that does not (timm, torchvision): a net
# rebuilt from a checkpoint gets its weights from the checkpoint.
NO_WEIGHTS = {"pretrained": False, "weights": None}


def takes_spec(factory: Callable) -> bool:
    """Whether `factory` is written for the template: its first parameter is the DataSpec
    (annotated so, or named `data`)."""
    try:
        first = next(iter(inspect.signature(factory).parameters.values()), None)
    except (TypeError, ValueError):
        return False
    return first is not None and (first.name == "data" or first.annotation in (DataSpec, "DataSpec"))


class StockNet:
    """Builds any nn.Module class or factory for the images a DataSpec describes.

    Args:
        target: the class or function, or its import path (`torchvision.models.resnet18`).
        kwargs: its arguments. `num_classes`, `in_chans` and `in_channels` left at the constructor's
            default (or absent, for timm.create_model) become the data's.
        weights: False drops pretrained weights (`pretrained`, `weights`): a checkpoint brings its own.
    """

    def __init__(self, target: Callable | str, kwargs: Mapping[str, Any] | None = None, weights: bool = True):
        self.path = target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"
        self.target = _import(target) if isinstance(target, str) else target
        self.kwargs = dict(kwargs or {})
        self.weights = weights

    @classmethod
    def from_spec(cls, spec: Mapping, weights: bool = True) -> "StockNet":
        """From a config's `{class_path, init_args, dict_kwargs}`."""
        kwargs = {**dict(spec.get("init_args") or {}), **dict(spec.get("dict_kwargs") or {})}
        return cls(spec["class_path"], kwargs, weights)

    def arguments(self, data: DataSpec, weights: bool | None = None) -> dict[str, Any]:
        """The constructor's arguments for these images (without pretrained weights when `weights`,
        or else the StockNet's own setting, is False)."""
        kwargs = dict(self.kwargs)
        defaults = constructor_defaults(self.target)
        open_ended = self.path.startswith("timm.") and _takes_var_keywords(self.target)
        for name, value_of in FROM_DATA.items():
            if name in defaults and kwargs.get(name, defaults[name]) == defaults[name]:
                kwargs[name] = value_of(data)
            elif name not in defaults and open_ended and name in ("num_classes", "in_chans"):
                kwargs.setdefault(name, value_of(data))
        if not (self.weights if weights is None else weights):
            kwargs.update({k: v for k, v in NO_WEIGHTS.items() if k in kwargs})
        return kwargs

    def spec(self, data: DataSpec, weights: bool | None = None) -> dict:
        """The config entry that rebuilds this net for these images: its class path and arguments
        (without pretrained weights when `weights` is False)."""
        arguments = self.arguments(data, weights)
        known = constructor_defaults(self.target)
        init_args = {k: v for k, v in arguments.items() if k in known}
        spec: dict = {"class_path": self.path, "init_args": init_args}
        extra = {k: v for k, v in arguments.items() if k not in known}
        if extra:
            spec["dict_kwargs"] = extra
        return spec

    def __call__(self, data: DataSpec) -> nn.Module:
        name = self.path
        kwargs = self.arguments(data)
        classes = None
        if kwargs.get("weights") is not None and "num_classes" in kwargs:
            # torchvision's pretrained weights come with their own head (1000 ImageNet classes):
            # built with it, then given one for the data's classes
            classes = kwargs.pop("num_classes")
        try:
            net = self.target(**kwargs)
        except Exception as err:  # whatever the library raises: an unknown name, a failed download
            raise ParameterError(StockNet, "net", f"{name} cannot be built: {_first_line(err)}") from None
        if not isinstance(net, nn.Module):
            raise ParameterError(StockNet, "net", f"{name} returned a {type(net).__name__}, not an nn.Module")
        if classes is not None:
            replace_head(net, classes)
        adapt_input_channels(net, data.channels)
        return net


def replace_head(net: nn.Module, num_classes: int) -> None:
    """The last nn.Linear of the net's classifier (`optim.head_of`) made anew with `num_classes`
    outputs, where it has another number."""
    head = head_of(net)
    linears = [m for m in (head.modules() if head is not None else ()) if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features == num_classes:
        return
    old = linears[-1]
    for parent in net.modules():
        for name, child in parent.named_children():
            if child is old:
                new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
                setattr(parent, name, new.to(old.weight.device, old.weight.dtype))
                return


def adapt_input_channels(net: nn.Module, channels: int) -> None:
    """A first convolution made for 3-channel (RGB) images, where the images have another number
    of channels: replaced by one that reads them. Its weights are those of the RGB filters summed
    over the colours (for one channel) or their mean spread over the channels, so pretrained filters
    answer a gray image as they answered its RGB copy."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels == 3 and channels != 3 and child.groups == 1:
                    setattr(parent, name, _conv_for(child, channels))
                return


def _conv_for(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    new = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    with torch.no_grad():
        summed = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(summed if channels == 1 else (summed / channels).expand_as(new.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.to(conv.weight.device, conv.weight.dtype)


def build_net(net: Any, data: DataSpec) -> tuple[nn.Module, dict | None]:
    """The nn.Module for these images from what `--model.net` gave: a factory written for the
    template (called with the DataSpec), a StockNet, a config entry `{class_path, init_args}`, any
    other nn.Module class or function that builds with its defaults (one whose other arguments
    must be given goes in a StockNet with them), or a built nn.Module. Also the config entry that rebuilds a
    stock net without its pretrained weights, for a checkpoint (None for the others).
    ParameterError when its output is not one value per class."""
    spec = None
    if isinstance(net, Mapping) and "class_path" in net:
        net = StockNet.from_spec(net)
    elif (inspect.isclass(net) or inspect.isfunction(net)) and not _needs_an_argument(net):
        net = StockNet(net)  # others (`lambda spec: ...`, a partial of a template net) get the spec
    if isinstance(net, StockNet):
        spec = net.spec(data, weights=False)
    module = net if isinstance(net, nn.Module) else net(data)
    if isinstance(net, nn.Module):  # built elsewhere from a stock net's entry: as StockNet would adapt it
        adapt_input_channels(module, data.channels)
    check_outputs(module, data)
    return module, spec


def check_outputs(net: nn.Module, data: DataSpec) -> None:
    """One pass of two blank images: the net must read the data's shape and give one value per class."""
    shape = (2, data.channels, data.height, data.width)
    was_training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(shape))
    except Exception as err:
        raise ParameterError(
            StockNet, "net", f"{type(net).__name__} cannot read {_shape(data)} images: {_first_line(err)}"
        ) from None
    finally:
        net.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, data.num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ParameterError(
            StockNet, "net", f"{type(net).__name__} must give one value per class, {data.num_classes} per "
            f"image, for {_shape(data)} images; it gave {got} for a batch of 2",
        )  # fmt: skip


@functools.cache
def constructor_defaults(target: Callable) -> dict[str, Any]:
    """Each named parameter of a constructor and its default (None or inspect.Parameter.empty when it
    has none), following **kwargs the way the command line does (torchvision's resnet18 -> ResNet).
    Cached per constructor: read it, do not change it."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    try:
        if inspect.isclass(target):
            parser.add_class_arguments(target, fail_untyped=False, sub_configs=True)
        else:
            parser.add_function_arguments(target, fail_untyped=False, sub_configs=True)
        found = parser.get_defaults().as_dict()  # a required parameter's default reads None
    except Exception:
        found = {}
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            found.setdefault(p.name, p.default)
    return found


def _needs_an_argument(factory: Callable) -> bool:
    """Whether a class or function given in Python is a factory for the template (it takes the
    DataSpec, or has a positional parameter without a default, as `lambda spec: ...` has), rather
    than a stock net that builds with its defaults (torchvision.models.resnet18, a plain class)."""
    if takes_spec(factory):
        return True
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional and p.default is inspect.Parameter.empty for p in params)


def _takes_var_keywords(target: Callable) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return False


def _import(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ParameterError(StockNet, "net", f"{path} cannot be imported: {_first_line(err)}") from None


def _shape(data: DataSpec) -> str:
    return f"{data.channels}x{data.height}x{data.width}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
