"""Plain networks. Each splits into `features` and `classifier`, the two parameter groups."""

from torch import Tensor, nn

from lit_mnist.errors import UserError


class ConvNet(nn.Module):
    """The seed CNN: conv32-conv64 (3x3, each followed by ReLU and 2x2 max-pool), fc128, fc10.

    Args:
        channels: output channels of each stage; every stage ends in a 2x2 max-pool.
        hidden: width of the hidden fully connected layer.
        num_classes: number of outputs.
        batch_norm: batch norm after every convolution and the hidden layer.
        dropout: dropout before each fully connected layer.
        convs_per_stage: 3x3 convolutions per stage (1 in the seed CNN); 2 makes a VGG-style net.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64),
        hidden: int = 128,
        num_classes: int = 10,
        batch_norm: bool = False,
        dropout: float = 0.0,
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        if not channels or min(channels) < 1 or hidden < 1 or convs_per_stage < 1 or len(channels) > 4:
            raise UserError(
                "ConvNet needs 1 to 4 stages of at least 1 channel, hidden >= 1 and convs_per_stage >= 1"
            )
        if not 0 <= dropout < 1:
            raise UserError(f"ConvNet dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        in_channels = 1
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
        side = 28 // 2 ** len(channels)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * side * side, hidden),
            nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A fully connected baseline: 784 -> hidden layers -> 10."""

    def __init__(
        self, hidden: tuple[int, ...] = (256, 128), num_classes: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
