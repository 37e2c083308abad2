"""Plain networks, built for the images a datamodule describes (`DataSpec`: channels, height,
width, number of classes). Each splits into `features` and `classifier`, the two parameter groups.

A net of your own takes the spec as its first argument: `MyNet(data: DataSpec, ...)`, and is named
on the command line as `--model.net=my_package.MyNet`.
"""

from torch import Tensor, nn

from lit_mnist.data import DataSpec
from lit_mnist.errors import ParameterError


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
