"""The nine "light" model-zoo graphs that the onnx package ships (onnx/backend/test/data/light),
made useful: their weights are ConstantOfShape nodes filled with one constant, which makes every
output degenerate, so `light_model` replaces each with a seeded random initializer.

Scales follow the tensor's role (read off the node that consumes it) so deep nets stay
numerically alive: He-normal for conv/FC weights, U(0.2, 0.6) for BatchNorm scales (so residual sums do not
saturate the softmax), U(0.5, 1.5) for variances and multiplicative scales, N(0, 0.1) for biases, means and additive shifts.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["LIGHT_MODELS", "light_model", "light_model_path"]

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")


def light_model_path(name: str) -> str:
    if name not in LIGHT_MODELS:
        raise KeyError(f"unknown light model {name!r}; choose one of {', '.join(LIGHT_MODELS)}")
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")


def light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """The light zoo graph `name` with every ConstantOfShape weight replaced by seeded random values."""
    model = onnx.load(light_model_path(name))
    rng = np.random.default_rng(seed)
    graph = model.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    roles = {name: (node.op_type, index) for node in graph.node for index, name in enumerate(node.input)}
    kept = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[node.input[0]])
            weight = _random_weight(roles.get(node.output[0], ("", 0)), shape, rng)
            graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
            if model.ir_version < 4:   # before IR v4 every initializer must also be a graph input
                graph.input.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, shape))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name.endswith("__SHAPE") and t.name not in used]:
        graph.initializer.remove(init)
    for value in [v for v in graph.input if v.name.endswith("__SHAPE") and v.name not in used]:
        graph.input.remove(value)
    return model


def _random_weight(role: tuple[str, int], shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    op, index = role
    if len(shape) >= 2 and op in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
        fan_in = int(np.prod(shape[1:])) if op != "Gemm" else shape[-1]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if op == "BatchNormalization" and index == 1:   # gamma < 1 keeps residual sums from growing
        return rng.uniform(0.2, 0.6, shape).astype(np.float32)
    if (op == "BatchNormalization" and index == 4) or op == "Mul":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)
