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

    frozen_bn: bool = False  # set by load_maskwatch_onnx: BatchNorm stays the identity it was loaded as

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


def load_maskwatch_onnx(net: MaskNet, path: str, class_names: tuple[str, ...]) -> int:
    """Start from a maskwatch classifier (an ONNX file from ``maskwatch train``): its convolutions (exported with
    BatchNorm folded in), head layer 1, and the head's output rows of the classes both know; a new class (e.g.
    not_face) starts from random weights. The folded file has no BatchNorm statistics, so every BatchNorm here
    becomes the identity and stays frozen (``net.frozen_bn``). Returns how many tensors were copied."""
    import json

    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    meta = json.loads(next((p.value for p in model.metadata_props if p.key == "maskwatch"), "{}") or "{}")
    if not meta.get("class_names"):
        raise ValueError(f"{path}: not a maskwatch classifier (no maskwatch metadata)")
    if int(meta.get("input_size", 0)) <= 0:
        raise ValueError(f"{path}: no input size in its metadata")
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    cast = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast"}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(init[cast.get(name, name)].astype("float32").copy())

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    mine = [m for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != len(mine) or len(bns) != len(mine):
        raise ValueError(f"{path}: {len(convs)} convolutions, this MobileNetV2 has {len(mine)}; another architecture or width")
    copied = 0
    with torch.no_grad():
        for node, conv, bn in zip(convs, mine, bns):
            w = tensor(node.input[1])
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{path}: a convolution of shape {tuple(w.shape)} where {tuple(conv.weight.shape)} was expected")
            conv.weight.copy_(w)
            bn.weight.fill_(1.0)
            bn.bias.copy_(tensor(node.input[2]) if len(node.input) > 2 else torch.zeros_like(bn.bias))
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) == x
            copied += 2
        net.fc1.weight.copy_(tensor("net.fc1.weight"))
        net.fc1.bias.copy_(tensor("net.fc1.bias"))
        w2, b2 = tensor("net.fc2.weight"), tensor("net.fc2.bias")
        for row, name in enumerate(class_names):
            if name in meta["class_names"]:
                k = meta["class_names"].index(name)
                net.fc2.weight[row].copy_(w2[k])
                net.fc2.bias[row].copy_(b2[k])
                copied += 2
        copied += 2
    net.frozen_bn = True
    return copied
