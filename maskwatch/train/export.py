"""Export a trained MaskNet to ONNX: outputs ``probs`` (N x C) and ``features`` (N x K x h x w).

The metadata a run-time classifier needs travels inside the file (ONNX ``metadata_props`` key
``maskwatch``, JSON): class names, input size, colour order, normalisation, crop margin, a data summary, and
the head's weights (float16, base64) so that class-activation heatmaps work without PyTorch.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..crops import IMAGENET_MEAN, IMAGENET_STD
from .model import ExportWrapper, MaskNet


def _b64(a: torch.Tensor) -> str:
    return base64.b64encode(a.detach().cpu().numpy().astype(np.float16).tobytes()).decode()


def export_onnx(net: MaskNet, path: Path, class_names: tuple[str, ...], input_size: int, margin: float,
                summary: dict[str, Any], fp16_weights: bool = True, temperature: float = 1.0) -> None:
    """Write ``net`` as ONNX with maskwatch's metadata. ``temperature``: the calibration the run-time classifier
    applies to the probabilities (softmax(logits / T)); 1 = none."""
    import onnx

    net = net.cpu().eval()
    buf = io.BytesIO()
    torch.onnx.export(
        ExportWrapper(net), (torch.zeros(1, 3, input_size, input_size),), buf, input_names=["input"],  # type: ignore[arg-type]
        output_names=["probs", "features"], dynamic_axes={"input": {0: "n"}, "probs": {0: "n"}, "features": {0: "n"}},
        opset_version=17, dynamo=False,
    )
    model = onnx.load_from_string(buf.getvalue())
    if fp16_weights:
        model = _fp16_storage(model)
    meta = {
        "format": "maskwatch-classifier/1", "class_names": list(class_names), "input_size": input_size,
        "color": "RGB", "layout": "NCHW", "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
        "scale": "pixel / 255, then (x - mean) / std", "margin": margin, "data": summary,
        "temperature": float(temperature),
        "head": {"fc1_w": _b64(net.fc1.weight), "fc1_b": _b64(net.fc1.bias), "fc2_w": _b64(net.fc2.weight),
                 "fc2_b": _b64(net.fc2.bias), "shapes": [list(net.fc1.weight.shape), list(net.fc2.weight.shape)]},
    }
    del model.metadata_props[:]
    model.metadata_props.append(onnx.StringStringEntryProto(key="maskwatch", value=json.dumps(meta)))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _fp16_storage(model: Any) -> Any:
    """Store large float32 initializers as float16 and cast them back to float32 at load time.

    onnxruntime folds the casts once when the session starts, so inference still runs in float32.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    new_inits, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 256:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
            new_inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model
