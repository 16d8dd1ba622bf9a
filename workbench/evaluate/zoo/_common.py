"""Shared plumbing for the zoo builders.

One place decides the opset / IR version, how weights are initialised and how nodes are
named, so every family obeys the same rules: checker-clean, loadable by onnxruntime,
unique readable node names, and weights whose scale keeps activations O(1) however deep
the net is. Random BatchNorm statistics would otherwise let activations drift by orders
of magnitude, so the builder tracks a rough second moment per tensor and gives each
BatchNorm running statistics close to what its input really has, as training would.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8          # onnxruntime compatibility; opset 17 needs at least IR 8
Dim = int | str


class GraphBuilder:
    """Accumulates nodes and initializers; each helper returns its output tensor name.

    Node outputs are named after their node, so graph views and fusion reports read
    the same names users see in error messages.
    """

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._node_names: set[str] = set()
        self._tensors: set[str] = set()
        self.m2: dict[str, float] = {}        # rough E[x^2] per tensor, for BN statistics

    # -- bookkeeping -------------------------------------------------------------------
    def _tensor(self, name: str) -> str:
        if name in self._tensors:
            raise ValueError(f"zoo builder: tensor name {name!r} used twice")
        self._tensors.add(name)
        return name

    def input(self, name: str, elem: int, shape: Sequence[Dim], m2: float = 1.0) -> str:
        self.inputs.append(helper.make_tensor_value_info(self._tensor(name), elem, list(shape)))
        self.m2[name] = m2
        return name

    def const(self, name: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(arr, self._tensor(name)))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, *, outputs: Sequence[str] | None = None,
             m2: float | None = None, **attrs) -> str:
        if name in self._node_names:
            raise ValueError(f"zoo builder: node name {name!r} used twice")
        self._node_names.add(name)
        outs = [self._tensor(o) for o in (outputs or [name])]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        if m2 is None:
            m2 = self.m2.get(inputs[0], 1.0) if inputs else 1.0
        for o in outs:
            self.m2[o] = m2
        return outs[0]

    # -- weights -----------------------------------------------------------------------
    def normal(self, shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def uniform(self, shape, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    # -- layers ------------------------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: int, name: str, *, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool = False) -> str:
        """Conv with Kaiming-normal weights (fan_in, ReLU gain): keeps E[x^2] after ReLU."""
        pad = k // 2 if pad is None else pad
        fan_in = cin // group * k * k
        w = self.const(f"{name}.weight", self.normal((cout, cin // group, k, k), math.sqrt(2.0 / fan_in)))
        ins = [x, w]
        if bias:
            ins.append(self.const(f"{name}.bias", self.uniform((cout,), -0.05, 0.05)))
        return self.node("Conv", ins, name, m2=2.0 * self.m2.get(x, 1.0), kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=group)

    def batchnorm(self, x: str, c: int, name: str, eps: float = 1e-5) -> str:
        """Inference BatchNormalization whose running stats roughly match its input."""
        var_in = max(self.m2.get(x, 1.0), 1e-6)
        params = [
            self.const(f"{name}.weight", self.uniform((c,), 0.5, 1.5)),
            self.const(f"{name}.bias", self.uniform((c,), -0.1, 0.1)),
            self.const(f"{name}.running_mean", self.normal((c,), 0.1 * math.sqrt(var_in))),
            self.const(f"{name}.running_var", self.uniform((c,), 0.5, 1.5) * np.float32(var_in)),
        ]
        return self.node("BatchNormalization", [x, *params], name, m2=1.0, epsilon=eps)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name, m2=0.5 * self.m2.get(x, 1.0))

    def relu6(self, x: str, name: str) -> str:
        """Clip(0, 6) with min/max as initializer inputs, the opset >= 11 form of ReLU6."""
        if "relu6.min" not in self._tensors:
            self.const("relu6.min", np.float32(0.0))
            self.const("relu6.max", np.float32(6.0))
        return self.node("Clip", [x, "relu6.min", "relu6.max"], name, m2=0.5 * self.m2.get(x, 1.0))

    def add(self, a: str, b: str, name: str) -> str:
        return self.node("Add", [a, b], name, m2=self.m2.get(a, 1.0) + self.m2.get(b, 1.0))

    def maxpool(self, x: str, name: str, k: int = 3, stride: int = 2, pad: int = 1) -> str:
        return self.node("MaxPool", [x], name, m2=2.0 * self.m2.get(x, 1.0),
                         kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def gemm(self, x: str, fin: int, fout: int, name: str, gain: float = 1.0) -> str:
        """Gemm with a torch-Linear-layout weight [out, in] (transB=1)."""
        w = self.const(f"{name}.weight", self.normal((fout, fin), math.sqrt(gain / fin)))
        b = self.const(f"{name}.bias", self.uniform((fout,), -0.05, 0.05))
        return self.node("Gemm", [x, w, b], name, m2=gain * self.m2.get(x, 1.0), transB=1)

    def classifier_head(self, x: str, channels: int, classes: int, *, pool: str = "avgpool",
                        flatten: str = "flatten", fc: str = "fc") -> str:
        """GlobalAveragePool -> Flatten -> Gemm, the tail every CNN here shares."""
        x = self.node("GlobalAveragePool", [x], pool)
        x = self.node("Flatten", [x], flatten, axis=1)
        w = self.const(f"{fc}.weight", self.normal((classes, channels), math.sqrt(1.0 / channels)))
        b = self.const(f"{fc}.bias", self.uniform((classes,), -0.05, 0.05))
        return self.node("Gemm", [x, w, b], fc, outputs=["logits"], transB=1)

    # -- finish ------------------------------------------------------------------------
    def model(self, graph_name: str, outputs: Sequence[tuple[str, int, Sequence[Dim]]],
              doc: str = "") -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs]
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, outs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  ir_version=IR_VERSION, producer_name="workbench.zoo",
                                  doc_string=doc)
        return model


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
