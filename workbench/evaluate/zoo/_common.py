"""Shared plumbing for the zoo builders.

One place decides the opset / IR version, how weights are initialised and how nodes are
named, so every family obeys the same rules: checker-clean, loadable by onnxruntime,
unique readable node names, and weights whose scale keeps activations O(1) however deep
the net is.

BatchNorm running statistics drawn blindly do not do that: conv outputs of ReLU inputs have
per-channel offsets, and a mismatch at every BN compounds along a residual stream until a
ResNet-50 ends with activations in the hundreds. A trained net's running statistics match
what its BN actually sees, so the builder can carry a small numpy probe batch through the
convolutional layers as it builds them, and each BN takes the probe's per-channel mean and
variance, perturbed (mean + small noise, variance x U(0.5, 1.5)) so that BN folding is
still tested with non-trivial numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8          # onnxruntime compatibility; opset 17 needs at least IR 8
Dim = int | str
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def _windows(x: np.ndarray, k: int, stride: int, pad: int, fill: float = 0.0) -> np.ndarray:
    """[N,C,H,W] -> [N,C,Ho,Wo,k,k] sliding windows (a view where possible)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    return sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def _np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, pad: int, group: int) -> np.ndarray:
    """Reference conv for the probe (im2col; depthwise as a sum over kernel taps)."""
    n, c, h, wd = x.shape
    o, k = w.shape[0], w.shape[-1]
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    xp = np.pad(x.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    depthwise = group == c == o and group > 1
    if group > 1 and not depthwise:
        ci, co = c // group, o // group
        return np.concatenate([_np_conv(x[:, i * ci:(i + 1) * ci], w[i * co:(i + 1) * co], None, stride, pad, 1)
                               for i in range(group)], axis=1) + (0 if b is None else b[None, :, None, None])
    taps = [xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] for i in range(k) for j in range(k)]
    if depthwise:
        y = sum(t.reshape(c, -1) * w[:, 0].reshape(c, -1)[:, [q]] for q, t in enumerate(taps))
    else:       # im2col: rows ordered (c, i, j) like the weight's flattening
        y = w.reshape(o, -1) @ np.stack(taps, axis=1).reshape(c * k * k, -1)
    y = y.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    return y + b[None, :, None, None] if b is not None else y


class GraphBuilder:
    """Accumulates nodes and initializers; each helper returns its output tensor name.

    Node outputs are named after their node, so graph views and fusion reports read the
    same names users see in error messages. `probe` holds numpy values for tensors the
    layer helpers could compute (see the module docstring); generic `node` calls do not.
    """

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.probe: dict[str, np.ndarray] = {}
        self._node_names: set[str] = set()
        self._tensors: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------
    def _tensor(self, name: str) -> str:
        if name in self._tensors:
            raise ValueError(f"zoo builder: tensor name {name!r} used twice")
        self._tensors.add(name)
        return name

    def input(self, name: str, elem: int, shape: Sequence[Dim], probe_shape: Sequence[int] | None = None) -> str:
        """A graph input; with `probe_shape`, a standard-normal probe batch flows from it."""
        self.inputs.append(helper.make_tensor_value_info(self._tensor(name), elem, list(shape)))
        if probe_shape is not None:
            probe_rng = np.random.default_rng(12345)          # independent of the weight stream
            self.probe[name] = probe_rng.standard_normal(probe_shape, dtype=np.float32)
        return name

    def const(self, name: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(arr, self._tensor(name)))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, *, outputs: Sequence[str] | None = None,
             value: np.ndarray | None = None, **attrs) -> str:
        if name in self._node_names:
            raise ValueError(f"zoo builder: node name {name!r} used twice")
        self._node_names.add(name)
        outs = [self._tensor(o) for o in (outputs or [name])]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        if value is not None:
            self.probe[outs[0]] = value
        return outs[0]

    def _probe(self, *names: str) -> list[np.ndarray] | None:
        vals = [self.probe.get(n) for n in names]
        return None if any(v is None for v in vals) else vals

    # -- weights -----------------------------------------------------------------------
    def normal(self, shape, std: float) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def uniform(self, shape, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    # -- layers ------------------------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: int, name: str, *, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool = False, lsuv: bool = False) -> str:
        """Conv with Kaiming-normal weights (fan_in, ReLU gain): keeps E[x^2] after ReLU.

        `lsuv` (for nets without BN): rescale the weights so the output has unit variance
        on the probe (layer-sequential unit-variance init), which max pools otherwise inflate.
        """
        pad = k // 2 if pad is None else pad
        w = self.normal((cout, cin // group, k, k), math.sqrt(2.0 / (cin // group * k * k)))
        b = self.uniform((cout,), -0.05, 0.05) if bias else None
        pv = self._probe(x)
        value = _np_conv(pv[0], w, None, stride, pad, group) if pv else None
        if value is not None and lsuv:
            scale = np.float32(1.0 / max(float(value.std()), 1e-6))
            w, value = w * scale, value * scale
        if value is not None and b is not None:
            value = value + b[None, :, None, None]
        ins = [x, self.const(f"{name}.weight", w)] + ([self.const(f"{name}.bias", b)] if bias else [])
        return self.node("Conv", ins, name, value=value, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=group)

    def batchnorm(self, x: str, c: int, name: str, eps: float = 1e-5) -> str:
        """Inference BatchNormalization; running stats from the probe when there is one."""
        gamma, beta = self.uniform((c,), 0.5, 1.5), self.uniform((c,), -0.1, 0.1)
        pv = self._probe(x)
        mean, var = 0.0, 1.0
        if pv:      # deep layers see few probe pixels: shrink each channel's variance to the layer's
            n = pv[0].size // c
            mean, var = pv[0].mean(axis=(0, 2, 3)), pv[0].var(axis=(0, 2, 3))
            var = (n * var + 32 * var.mean()) / (n + 32) + 1e-3
        mean = (mean + self.normal((c,), 0.1) * np.sqrt(var)).astype(np.float32)
        var = (self.uniform((c,), 0.5, 1.5) * var).astype(np.float32)
        params = [self.const(f"{name}.{n}", a) for n, a in
                  (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        value = None
        if pv:
            scale = gamma / np.sqrt(var + eps)
            value = (pv[0] - mean[:, None, None]) * scale[:, None, None] + beta[:, None, None]
        return self.node("BatchNormalization", [x, *params], name, value=value, epsilon=eps)

    def relu(self, x: str, name: str) -> str:
        pv = self._probe(x)
        return self.node("Relu", [x], name, value=np.maximum(pv[0], 0) if pv else None)

    def relu6(self, x: str, name: str) -> str:
        """Clip(0, 6) with min/max as initializer inputs, the opset >= 11 form of ReLU6."""
        if "relu6.min" not in self._tensors:
            self.const("relu6.min", np.float32(0.0))
            self.const("relu6.max", np.float32(6.0))
        pv = self._probe(x)
        return self.node("Clip", [x, "relu6.min", "relu6.max"], name,
                         value=np.clip(pv[0], 0, 6) if pv else None)

    def add(self, a: str, b: str, name: str) -> str:
        pv = self._probe(a, b)
        return self.node("Add", [a, b], name, value=pv[0] + pv[1] if pv else None)

    def maxpool(self, x: str, name: str, k: int = 3, stride: int = 2, pad: int = 1) -> str:
        pv = self._probe(x)
        value = _windows(pv[0], k, stride, pad, -np.inf).max(axis=(4, 5)) if pv else None
        return self.node("MaxPool", [x], name, value=value, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4)

    def gemm(self, x: str, fin: int, fout: int, name: str, gain: float = 1.0, output: str | None = None) -> str:
        """Gemm with a torch-Linear-layout weight [out, in] (transB=1), std sqrt(gain/fin)."""
        w = self.const(f"{name}.weight", self.normal((fout, fin), math.sqrt(gain / fin)))
        b = self.const(f"{name}.bias", self.uniform((fout,), -0.05, 0.05))
        return self.node("Gemm", [x, w, b], name, outputs=[output] if output else None, transB=1)

    def classifier_head(self, x: str, channels: int, classes: int, *, pool: str = "avgpool",
                        flatten: str = "flatten", fc: str = "fc") -> str:
        """GlobalAveragePool -> Flatten -> Gemm to "logits", the tail every CNN here shares."""
        x = self.node("Flatten", [self.node("GlobalAveragePool", [x], pool)], flatten, axis=1)
        return self.gemm(x, channels, classes, fc, output="logits")

    # -- finish ------------------------------------------------------------------------
    def model(self, graph_name: str, outputs: Sequence[tuple[str, int, Sequence[Dim]]],
              doc: str = "") -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs]
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, outs, self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 ir_version=IR_VERSION, producer_name="workbench.zoo", doc_string=doc)
