"""Precision assignment: which layers of a lowered fp32 network compute in fp16, bf16 or TF32, with
every change of dtype an explicit, visible layer.

fp32: nothing changes.

fp16 / bf16 (bf16 is `ml_dtypes.bfloat16`): float32 weights read by lowered layers are converted
once, at build time (values beyond the low range are clamped to its largest finite value, as
TensorRT does; a weight that float32 readers still need keeps its original and gets a converted
copy "<weight>/fp16"). Engine inputs and outputs keep their float32 dtype, as TensorRT's do by
default, so a Cast layer "<input>/reformat" follows each float32 input and a Cast
"<output>/reformat" back to float32 precedes each float32 output. Every other layer gets the
chosen precision and its CPU kernel computes in that dtype (Conv/MatMul/Gemm accumulate in
float32 and round once at the output; normalizations take their statistics in float32), except
these, whose CPU kernels would accumulate in the low dtype where GPU kernels use float32 (numpy
sums float16 in float16; bfloat16 sums lose whole digits):

    Softmax, LogSoftmax                  exp() summed in the input dtype
    ReduceSum/Mean/Prod/L1/L2/LogSum/    the reduction accumulates in the input dtype
      LogSumExp/SumSquare, CumSum         (ReduceMax/Min are exact and are lowered)
    Einsum                               numpy's einsum accumulates float16 in float16
    Range                                index arithmetic (float16 counts exactly only to 2048)
    CastLike                             its output dtype follows its second input
    Quantize/DequantizeLinear, QLinear*, int8 math with float32 scales: the int8 mode's business
      DynamicQuantizeLinear, *Integer

workbench::FusedLayerNorm and FusedAttention are lowered: with half inputs their CPU kernels keep
statistics, scores and softmax in float32 as fused GPU kernels do (cpu/ops/fused_transformer.py).

A kept layer reads float32 through an exact up-Cast and its low readers get a down-Cast, so what
runs is "float32 math, low-precision storage", what a GPU kernel of that op does. Also kept in
float32: float arithmetic that depends on no engine input (shape arithmetic done in float,
constants the optimizer did not fold), so shapes and constants stay exact; layers that make
float32 from non-float inputs (ConstantOfShape, RandomNormalLike: an attribute sets the dtype);
ops without an ONNX schema or whose output dtype cannot be inferred (plugins: nothing says which
inputs are data). Layers with no float32 tensor (integer shape math, Gather indices) are
untouched, as are Shape and Size (they read only the shape) and the model's own Cast layers (they
read whichever dtype exists); they carry the chosen precision, having nothing left to lower.
Which inputs of a lowered layer are data comes from the op's ONNX schema: inputs sharing the type
variable of its first float32 input are lowered, the others stay float32 (Resize scales and roi,
BatchNormalization statistics since opset 15, Pow's exponent).

tf32: storage stays float32. Conv, ConvTranspose, MatMul, Gemm and workbench::FusedConv /
FusedGemm get precision "tf32": both matmul operands are rounded to TF32 (`round_to_tf32`: 10
mantissa bits, round to nearest even) before the float32/float64 accumulation, weights once at
build time and activations by an explicit workbench::RoundTF32 layer "<tensor>/round_tf32".
Biases, residuals and epilogues stay float32; every other layer is "fp32".
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import Callable, Mapping

import ml_dtypes
import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.precision import round_to_tf32
from workbench.builder.network import IOSpec
# the rules and type inference live in precision_rules; re-exported here, where callers import them
from workbench.builder.precision_rules import (_READS_ANY, F32, KEEP_FP32, LOW_DTYPES, TF32_OPERANDS,
                                               _data_dependent, _formal_types, _tag, tensor_dtypes)
from workbench.errors import BuildError
from workbench.ir import WORKBENCH_DOMAIN
from workbench.ir.dtypes import np_dtype, onnx_elem_type
from workbench.ir.fused.pointwise import parse_program, program_dtype
from workbench.ir.names import free_name

__all__ = ["assign_precision", "round_to_tf32", "tensor_dtypes", "KEEP_FP32", "TF32_OPERANDS", "LOW_DTYPES"]
log = logging.getLogger(__name__)


def assign_precision(layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec],
                     outputs: list[IOSpec], precision: str | Mapping[str, str]
                     ) -> tuple[list[Layer], dict[str, np.ndarray]]:
    """Give every layer its precision and make the dtypes follow: convert weights, insert Cast
    (fp16/bf16) or RoundTF32 (tf32) layers. The arguments are not modified.

    Args:
        layers, weights, inputs, outputs: a lowered float32 network (`build_network`'s).
        precision: "fp32", "tf32", "fp16" or "bf16"; or a map layer name -> precision (mixed
            precision, see workbench/builder/mixed_precision.py; layers not named stay fp32).

    Example:
        >>> layers, weights = assign_precision(net.layers, net.weights, net.inputs, net.outputs, "fp16")
        >>> [(l.name, l.op, l.precision) for l in layers][:2]
        [('input/reformat', 'Cast', 'fp16'), ('conv1', 'Conv', 'fp16')]
    """
    if isinstance(precision, Mapping):
        from workbench.builder.mixed_precision import assign_layer_precisions   # it builds on this module
        layers, weights, _ = assign_layer_precisions(layers, weights, inputs, outputs, precision)
        return layers, weights
    if precision == "fp32":
        return [dataclasses.replace(layer, precision="fp32") for layer in layers], dict(weights)
    dtypes = tensor_dtypes(layers, weights, inputs)
    if precision == "tf32":
        plans = [_plan_tf32(layer, dtypes) for layer in layers]
        convert = {"tf32": round_to_tf32}
    elif precision in LOW_DTYPES:
        low = LOW_DTYPES[precision]
        data = _data_dependent(layers, inputs)
        plans = [_plan_low(layer, dtypes, data, precision) for layer in layers]
        convert = {precision: lambda w: _saturate(w, low)}
    else:
        raise BuildError(f"precision {precision!r} cannot be assigned; choose one of fp32, tf32, "
                         f"{', '.join(LOW_DTYPES)}")
    rewriter = _Rewriter(layers, weights, inputs, outputs)
    rewriter.convert_weights(layers, plans, convert)
    for layer, plan in zip(layers, plans):
        rewriter.emit(layer, plan)
    rewriter.finish_outputs()
    kept = Counter(p.reason for p in plans if p.precision == "fp32" and p.reason)
    log.info("%s: %d layers, %d inserted, %d kept in float32%s", precision, len(layers),
             len(rewriter.layers) - len(layers), sum(kept.values()),
             "".join(f"; {n} x {reason}" for reason, n in kept.items()))
    return rewriter.layers, rewriter.weights


@dataclasses.dataclass
class _Plan:
    """How one layer runs: the tag of the version each input is read in (None: whichever exists),
    the tag each output is written in, and why a layer stays float32."""
    precision: str
    reads: list[str | None]
    writes: list[str | None]
    reason: str = ""


def _plan_low(layer: Layer, dtypes: dict, data: dict[str, bool], low: str) -> _Plan:
    key = (layer.domain if layer.domain != "ai.onnx" else "", layer.op)
    fin = [i for i, n in enumerate(layer.inputs) if n and dtypes.get(n) == F32]
    fout = [i for i, n in enumerate(layer.outputs) if n and dtypes.get(n) == F32]
    as_is = [_tag(dtypes.get(n)) if n else None for n in layer.outputs]
    keep = ["fp32" if i in fin else None for i in range(len(layer.inputs))]
    if (not fin and not fout) or key in _READS_ANY:
        return _Plan(low, [None] * len(layer.inputs), as_is)
    if key in KEEP_FP32:
        return _Plan("fp32", keep, as_is, KEEP_FP32[key])
    if any(n and dtypes.get(n) is None for n in layer.outputs):
        return _Plan("fp32", keep, as_is, "its output dtype could not be inferred")
    if not any(data.get(n, False) for n in layer.inputs if n):
        return _Plan("fp32", keep, as_is, "computes on constants and shapes only (no engine input); kept exact, "
                                          "as constant folding would")
    if not fin:
        return _Plan("fp32", keep, as_is, "makes float32 from non-float inputs (dtype set by an attribute)")
    types = _formal_types(layer)
    if types is None:
        return _Plan("fp32", keep, as_is, "no ONNX schema says which of its inputs are data")
    in_types, out_types, type_vars = types
    primary = in_types[fin[0]]
    if primary not in type_vars:
        return _Plan("fp32", keep, as_is, f"its float input has the fixed type {primary}")
    reads = [low if i in fin and in_types[i] == primary else keep[i] for i in range(len(layer.inputs))]
    writes = [low if i in fout and out_types[i] == primary else as_is[i] for i in range(len(layer.outputs))]
    if key == (WORKBENCH_DOMAIN, "PointwiseChain") and layer.outputs:   # a Cast step fixes the dtype
        read = [LOW_DTYPES[low] if r == low else dtypes.get(n) for r, n in zip(reads, layer.inputs)]
        out = program_dtype(parse_program(layer.attrs["program"]),
                            [onnx_elem_type(d) if d is not None else 0 for d in read])
        writes[0] = _tag(np_dtype(out)) if out else writes[0]
    return _Plan(low, reads, writes)


def _plan_tf32(layer: Layer, dtypes: dict) -> _Plan:
    key = (layer.domain if layer.domain != "ai.onnx" else "", layer.op)
    operands = TF32_OPERANDS.get(key, ())
    writes = [_tag(dtypes.get(n)) if n else None for n in layer.outputs]
    if not operands or not all(i < len(layer.inputs) and dtypes.get(layer.inputs[i]) == F32 for i in operands):
        return _Plan("fp32", [None] * len(layer.inputs), writes)
    reads = ["tf32" if i in operands else None for i in range(len(layer.inputs))]
    return _Plan("tf32", reads, writes)


class _Rewriter:
    """Emits the new layer list. A tensor may exist in several versions (its float32 original,
    its fp16 copy, its TF32-rounded copy); `versions[t][tag]` names the tensor holding each.
    A missing version is made on first request: a converted weight at build time, or an inserted
    Cast / RoundTF32 layer placed just before the layer that needs it."""

    def __init__(self, layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec],
                 outputs: list[IOSpec]):
        self.layers: list[Layer] = []
        self.weights = dict(weights)
        self.outputs = {s.name: s for s in outputs}
        self.versions: dict[str, dict[str, str]] = {}
        self.home: dict[str, str] = {}                    # the version produced (or given)
        self.origin: dict[str, list[str]] = {}
        self.shapes: dict[str, tuple | None] = {}
        self.opset = max((l.opset for l in layers if l.domain in ("", "ai.onnx")), default=17)
        self.layer_names = {l.name for l in layers}
        self.tensor_names = set(weights) | {s.name for s in inputs} | set(self.outputs) | {
            n for l in layers for n in (*l.inputs, *l.outputs) if n}
        for spec in inputs:
            self._add(spec.name, _tag(np.dtype(spec.dtype)), spec.name, spec.shape, [spec.name])
        for name, value in weights.items():
            self._add(name, _tag(value.dtype), name, value.shape, [name])

    def _add(self, tensor, tag, name, shape, origin):
        self.versions.setdefault(tensor, {})[tag] = name
        self.home.setdefault(tensor, name)
        self.shapes.setdefault(tensor, shape)
        self.origin.setdefault(tensor, origin)

    def convert_weights(self, layers: list[Layer], plans: list[_Plan], convert: dict[str, Callable]) -> None:
        """Convert each float32 weight once: in place when every reader wants the converted
        version, else as a copy beside the original."""
        wants: dict[str, set] = {}
        for layer, plan in zip(layers, plans):
            for name, tag in zip(layer.inputs, plan.reads):
                if name in self.weights and self.weights[name].dtype == F32:
                    wants.setdefault(name, set()).add(tag or "fp32")
        for name in self.outputs:
            if name in wants:
                wants[name].add("fp32")
        for name, tags in wants.items():
            for tag in tags - {"fp32"}:
                value = convert[tag](self.weights[name])
                if tags == {tag}:
                    self.weights[name] = value
                    self.versions[name] = {tag: name}
                else:
                    copy = unique_name(f"{name}/{tag}", self.tensor_names)
                    self.weights[copy] = value
                    self.versions[name][tag] = copy

    def emit(self, layer: Layer, plan: _Plan) -> None:
        inputs = [self.version(n, tag) if n else n for n, tag in zip(layer.inputs, plan.reads)]
        outputs = []
        shapes = list(layer.output_shapes) + [None] * (len(layer.outputs) - len(layer.output_shapes))
        for name, tag, shape in zip(layer.outputs, plan.writes, shapes):
            if not name:
                outputs.append(name)
                continue
            spec = self.outputs.get(name)
            renamed = spec is not None and tag is not None and _tag(np.dtype(spec.dtype)) != tag
            actual = unique_name(f"{name}/{tag}", self.tensor_names) if renamed else name
            self._add(name, tag, actual, shape, list(layer.source_nodes))
            outputs.append(actual)
        self.layers.append(dataclasses.replace(
            layer, inputs=inputs, outputs=outputs, attrs=dict(layer.attrs), precision=plan.precision,
            source_nodes=list(layer.source_nodes), output_shapes=list(layer.output_shapes)))

    def version(self, tensor: str, tag: str | None) -> str:
        have = self.versions.get(tensor)
        if have is None or tag is None:
            return self.home.get(tensor, tensor)
        if tag in have:
            return have[tag]
        # TF32 rounds float32 values: with only a low version (mixed precision) make the float32 one first
        source = have.get("fp32") or (self.version(tensor, "fp32") if tag == "tf32" else self.home[tensor])
        spec = self.outputs.get(tensor)
        if spec is not None and tag == _tag(np.dtype(spec.dtype)):
            name = tensor                                      # the engine output itself
        else:
            name = unique_name(f"{tensor}/{tag}", self.tensor_names)
        if tag == "tf32":
            layer = Layer(unique_name(f"{tensor}/round_tf32", self.layer_names), "RoundTF32", [source], [name],
                          domain=WORKBENCH_DOMAIN, opset=1, precision="tf32")
        else:
            target = LOW_DTYPES.get(tag, F32)
            layer = Layer(unique_name(f"{tensor}/reformat", self.layer_names), "Cast", [source], [name],
                          attrs={"to": onnx_elem_type(target)}, opset=self.opset,
                          precision=tag if tag in LOW_DTYPES else self._low_of(have))
        layer.source_nodes = list(self.origin.get(tensor, [tensor]))
        layer.output_shapes = [self.shapes.get(tensor)]
        self.layers.append(layer)
        have[tag] = name
        return name

    def _low_of(self, have: dict[str, str]) -> str:
        """Precision of a Cast back to float32: the low precision it converts from."""
        return next((tag for tag in have if tag in LOW_DTYPES), "fp32")

    def finish_outputs(self) -> None:
        for name, spec in self.outputs.items():
            if name in self.versions and name not in self.versions[name].values():
                self.version(name, _tag(np.dtype(spec.dtype)))


def unique_name(base: str, taken: set[str]) -> str:
    """A free name (`ir.names.free_name`), reserved by adding it to `taken`."""
    name = free_name(base, taken)
    taken.add(name)
    return name


def _saturate(weight: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert a weight, clamping finite values beyond the low dtype's range to its largest
    finite value rather than letting them become infinities (TensorRT clamps weights too)."""
    limit = float(ml_dtypes.finfo(dtype).max)
    beyond = np.isfinite(weight) & (np.abs(weight) > limit)
    if beyond.any():
        log.warning("%d weight values exceed the %s range and are clamped to +-%g", int(beyond.sum()), dtype, limit)
        weight = np.where(beyond, np.copysign(np.float32(limit), weight), weight)
    return weight.astype(dtype)

