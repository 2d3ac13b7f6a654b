"""A plain ONNX convolutional graph (YuNet's) as a trainable PyTorch module, and its weights written back.

Only the operators YuNet uses are supported (Conv, Relu, Sigmoid, Add, MaxPool, nearest Resize, Transpose,
Reshape to ``(1, -1, k)``); anything else is refused with its name. Training changes only the weights, so the
exported file keeps the original graph, its input/output names and its opset: every run-time back-end that
loads the original (onnxruntime, ``cv2.FaceDetectorYN``) loads the tuned one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = {"Conv", "Relu", "Sigmoid", "Add", "MaxPool", "Resize", "Transpose", "Reshape"}


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(nn.Module):
    """``forward(x) -> dict`` of the graph's outputs. x: (N, 3, H, W) float, as the ONNX input expects (YuNet: BGR
    0..255, H and W multiples of 32). Reshapes to ``(1, -1, k)`` keep the batch size instead of 1."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        g = model.graph
        bad = sorted({n.op_type for n in g.node} - SUPPORTED)
        if bad:
            raise ValueError(f"operators not supported for training: {', '.join(bad)}")
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.param_names: dict[str, str] = {}  # ONNX initializer name -> parameter name
        self.params = nn.ParameterDict()
        self.consts: dict[str, np.ndarray] = {}
        for n in g.node:
            for k, name in enumerate(n.input):
                if name not in inits:
                    continue
                if n.op_type == "Conv" and k in (1, 2):
                    key = f"p{len(self.param_names)}"
                    self.param_names[name] = key
                    self.params[key] = nn.Parameter(torch.from_numpy(inits[name].astype(np.float32).copy()))
                else:
                    self.consts[name] = inits[name]
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in g.node]
        self.input_name = g.input[0].name
        self.output_names = [o.name for o in g.output]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor:
            return self.params[self.param_names[name]] if name in self.param_names else env[name]

        for op, ins, outs, a in self.nodes:
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    raise ValueError("asymmetric Conv padding is not supported")
                y = F.conv2d(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 and ins[2] else None,
                             stride=a.get("strides", [1, 1]), padding=pads[:2], dilation=a.get("dilations", [1, 1]),
                             groups=a.get("group", 1))
            elif op == "Relu":
                y = F.relu(get(ins[0]))
            elif op == "Sigmoid":
                y = torch.sigmoid(get(ins[0]))
            elif op == "Add":
                y = get(ins[0]) + get(ins[1])
            elif op == "MaxPool":
                pads = a.get("pads", [0, 0, 0, 0])
                y = F.max_pool2d(get(ins[0]), a["kernel_shape"], a.get("strides", a["kernel_shape"]), pads[:2],
                                 ceil_mode=bool(a.get("ceil_mode", 0)))
            elif op == "Resize":
                if a.get("mode", b"nearest") != b"nearest":
                    raise ValueError("only nearest Resize is supported")
                scales = self.consts[ins[2]].tolist()
                y = F.interpolate(get(ins[0]), scale_factor=tuple(scales[2:]), mode="nearest")
            elif op == "Transpose":
                y = get(ins[0]).permute(*a["perm"])
            else:  # Reshape
                shape = [int(v) for v in self.consts[ins[1]].tolist()]
                t = get(ins[0])
                y = t.reshape(t.shape[0], *shape[1:]) if shape[0] == 1 else t.reshape(shape)
            env[outs[0]] = y
        return {name: env[name] for name in self.output_names}


def write_weights(net: OnnxNet, model: Any) -> Any:
    """A copy of the ONNX ``model`` with ``net``'s current weights in its initializers (graph unchanged)."""
    import copy

    from onnx import numpy_helper

    out = copy.deepcopy(model)
    for init in out.graph.initializer:
        if init.name in net.param_names:
            arr = net.params[net.param_names[init.name]].detach().cpu().numpy().astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    return out
