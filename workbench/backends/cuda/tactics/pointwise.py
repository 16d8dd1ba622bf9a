"""Generated elementwise kernels: one CuPy ElementwiseKernel per distinct PointwiseChain program,
and the single elementwise ONNX ops through the same generator. The C++ each step becomes, and
the float/bool/int64 value kinds, are pointwise_ops.py's (`translate`, re-exported here).

Broadcasting is CuPy's: inputs of other shapes broadcast to the output. In an NHWC layer 4-D
activations are stored channels-last with their own (broadcastable) shapes, and constant inputs
are re-laid out to match in `prepare` (an NCHW [1, C, 1, 1] scale becomes [1, 1, 1, C]);
lower-rank activations that would broadcast against NCHW axes are refused at run time with the
layer named.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import present_outputs, resolve_inputs, upload_weights
from workbench.backends.cuda.tactics.pointwise_ops import _OPSETS, _PREAMBLE, _STEPS, ops_supported, translate
from workbench.ir.fused.pointwise import parse_program

__all__ = ["translate", "ops_supported"]


def _kind(dtype) -> str:
    dtype = np.dtype(dtype)
    return "b" if dtype == np.bool_ else "i" if dtype.kind in "iu" else "f"


def _layer_program(layer: Layer) -> tuple[list[dict], dict]:
    """A PointwiseChain's program, or a one-step program for a single elementwise ONNX op."""
    if layer.domain == "workbench" and layer.op == "PointwiseChain":
        return parse_program(layer.attrs["program"]), _OPSETS
    domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
    step = {"op": layer.op, "domain": domain, "attrs": dict(layer.attrs),
            "inputs": [f"in{i}" if name else "" for i, name in enumerate(layer.inputs)]}
    return [step], {domain: layer.opset or _OPSETS.get(domain, 1)}


_KERNELS: dict[tuple, Any] = {}
# CuPy reads one-letter type names as placeholders (each input its own dtype); Y is the output's
_TYPE_NAMES = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXZ"]


def _kernel(body: str, count: int):
    key = (body, count)
    if key not in _KERNELS:
        name = "wb_pointwise_" + hashlib.sha1(body.encode()).hexdigest()[:12]
        params = ", ".join(f"{_TYPE_NAMES[i]} in{i}" for i in range(count))
        _KERNELS[key] = cupy().ElementwiseKernel(params, "Y out", body, name, preamble=_PREAMBLE)
    return _KERNELS[key]


@dataclasses.dataclass
class _State:
    layer: Layer
    program: list[dict]
    opsets: dict
    weights: dict[int, Any]
    kernels: dict = dataclasses.field(default_factory=dict)    # input kinds -> (kernel, present input slots)


def _to_nhwc_weight(value: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against an NCHW 4-D tensor, re-laid out to broadcast against
    its NHWC storage: left-pad to rank 4, then move C last."""
    if value.ndim > 4 or value.size == 1:
        return value
    return value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 2, 3, 1)


class PointwiseKernel(CudaTactic):
    """`cupy.pointwise`: PointwiseChain layers and single elementwise ops."""
    name = "cupy.pointwise"
    source = "cupy"

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision not in ("fp32", "tf32", "fp16"):
            return False
        if len(layer.inputs) > len(_TYPE_NAMES):
            return False
        if layer.domain == "workbench" and layer.op == "PointwiseChain":
            try:
                return ops_supported(parse_program(layer.attrs["program"]))
            except (KeyError, ValueError):
                return False
        domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
        if (domain, layer.op) not in _STEPS or layer.op == "Identity":
            return False
        if sum(1 for o in layer.outputs if o) != 1:       # Dropout-like extra outputs are not ours
            return False
        return ops_supported(_layer_program(layer)[0])

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        program, opsets = _layer_program(layer)
        rank4 = not layer.output_shapes or layer.output_shapes[0] is None or len(layer.output_shapes[0]) == 4
        relayout = (lambda i, v: _to_nhwc_weight(v)) if layer.layout == "NHWC" and rank4 else None
        return _State(layer, program, opsets, upload_weights(layer, weights, relayout))

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state.layer
        args = resolve_inputs(state.weights, inputs, len(layer.inputs))
        if layer.layout == "NHWC":
            for i, a in enumerate(args):
                if a is not None and i not in state.weights and a.ndim != 4 and a.size != 1:
                    raise ValueError(f"layer {layer.name!r} ({layer.qualified_op}, NHWC): input {i} "
                                     f"({layer.inputs[i]!r}) has shape {a.shape}; it would broadcast against "
                                     f"NCHW axes. Only 4-D activations and scalars are handled channels-last")
        kinds = tuple(_kind(a.dtype) if a is not None else "-" for a in args)
        entry = state.kernels.get(kinds)
        if entry is None:
            entry = self._build(state, kinds)
            state.kernels[kinds] = entry
        kernel, slots = entry
        out = present_outputs(layer, outputs)[0][1]
        kernel(*[args[i] for i in slots], out)
        return outputs

    @staticmethod
    def _build(state: _State, kinds: tuple[str, ...]):
        slots = [i for i, k in enumerate(kinds) if k != "-"]
        renumber = {f"in{i}": f"in{n}" for n, i in enumerate(slots)}
        program = [dict(step, inputs=[renumber.get(r, "") if r.startswith("in") else r for r in step["inputs"]])
                   for step in state.program]
        body = translate(program, [kinds[i] for i in slots], state.opsets)
        return _kernel(body, len(slots)), slots


register(PointwiseKernel())
