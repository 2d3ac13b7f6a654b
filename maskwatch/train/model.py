"""MobileNetV2 in plain PyTorch (torchvision-compatible parameter names) with the documents' head.

The layer names match ``torchvision.models.mobilenet_v2`` so that torchvision's ImageNet weights
(``mobilenet_v2-b0353104.pth``) load without renaming. torchvision itself is not needed.
"""

from __future__ import annotations

import torch
from torch import nn

# t (expansion), c (channels), n (repeats), s (stride) -- torchvision's table.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    """The convolutional trunk: ``features`` of torchvision's MobileNetV2 (output stride 32)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        cin = _make_divisible(32 * width)
        self.out_channels = _make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in _SETTINGS:
            cout = _make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNReLU(cin, self.out_channels, kernel=1))
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MaskNet(nn.Module):
    """MobileNetV2 trunk + head (global average pool, dense 128 ReLU, dropout 0.5, dense n_classes).

    ``forward`` returns logits; :class:`ExportWrapper` adds softmax and the feature map for ONNX.
    Input: float tensor N x 3 x S x S, RGB, normalised with the ImageNet mean/std.
    """

    def __init__(self, n_classes: int, width: float = 1.0, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = MobileNetV2Features(width)
        self.fc1 = nn.Linear(self.backbone.out_channels, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_classes)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean(dim=(2, 3))
        return self.fc2(self.drop(torch.relu(self.fc1(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class ExportWrapper(nn.Module):
    """What the ONNX file computes: (class probabilities N x C, last conv feature map N x K x h x w)."""

    def __init__(self, net: MaskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.backbone(x)
        return torch.softmax(self.net.head(fmap), dim=1), fmap


def load_imagenet_trunk(net: MaskNet, state: dict[str, torch.Tensor]) -> int:
    """Copy torchvision ImageNet weights (``features.*``) into the trunk; returns how many tensors loaded."""
    own = net.backbone.state_dict()
    picked = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not picked:
        raise ValueError("no tensor of the ImageNet checkpoint matches this MobileNetV2 (width must be 1.0)")
    net.backbone.load_state_dict(picked, strict=False)
    return len(picked)
