"""workbench::FusedQConv (INT8 convolution, requantizing epilogue) as one cuDNN frontend graph:

    conv_fprop(X, W) -> float -> * M[k] -> + B[k] (-> + float(Z) * residual_scale) -> activation -> Y

in two forms, both exact on the integer sum, which is what the CPU emulation computes:

    cudnn.qconv_int8        X, W int8 NHWC / KRSC, int32 accumulation on the integer tensor cores
                            (IMMA); cuDNN needs C a multiple of 4.
    cudnn.qconv_fp16_exact  X (converted on the GPU) and W as fp16, fp32 accumulation on the fp16
                            tensor cores: every int8 value is exact in fp16 and every partial sum is
                            an integer below 2^24 while C*R*S*127^2 < 2^24 (C*R*S <= 1040), so the
                            sum is exact. For few channels (< 16), which cuDNN's int8 kernels refuse or run slowly:
                            ResNet's 7x7 stem on 3 channels (11 ms as int8 against 0.45 ms as fp16
                            on the H100, bench/probe_int8_conv.py).

Y is int8 (cuDNN converts round-to-nearest-even with saturation) or float32/float16. Plans are
built and the fastest of cuDNN's first candidates chosen on the first run per input shape, as
cudnn.conv_fused does (cudnn_conv.py), whose handle, plan and timing helpers these share.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import activation_of
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.conv_spec import (ConvWeights, check_output, geometry, is_conv2d_nhwc,
                                                       qconv_constants)
from workbench.backends.cuda.tactics.cudnn_conv import (_ACTIVATIONS, CudnnUnsupportedError, _Plan, _activation,
                                                        _choose_fastest, _handle, _nhwc, conv_node, cudnn)

__all__ = ["CudnnQConv"]

_EXACT_FP16_TERMS = (1 << 24) // (127 * 127)          # C*R*S up to this keeps fp32 sums of int8 products exact
_CUDNN_TYPES = {"int8": "INT8", "float16": "HALF", "float32": "FLOAT"}
_FEW_CHANNELS = 16              # below this the int8 kernels refuse (C % 4) or crawl (the 3-channel stem)
_CANDIDATES = 4                 # cuDNN plans built and timed per shape (each may compile a kernel)


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: ConvWeights        # w: int8 OIHW (host), for the geometry
    w: Any                      # device KRSC, int8 or fp16
    multiplier: Any             # device float32 [K]
    bias: Any                   # device float32 [K] or None
    residual_scale: Any         # device float32 [1]
    plans: dict = dataclasses.field(default_factory=dict)
    geos: dict = dataclasses.field(default_factory=dict)
    staged: dict = dataclasses.field(default_factory=dict)    # input shape -> fp16 copy of X (fp16_exact)


class CudnnQConv(CudaTactic):
    source = "cudnn"

    def __init__(self, compute: str):
        self.compute = compute                     # "int8" or "fp16_exact"
        self.name = f"cudnn.qconv_{compute}"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (is_conv2d_nhwc(layer, precision, ("int8",)) and activation_of(layer)[0] in _ACTIVATIONS
                and int(layer.attrs.get("group", 1)) == 1)

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cp = cupy()
        w, host_m, host_b = qconv_constants(layer, weights, self.name)
        k, c, r, s = w.shape
        if self.compute == "int8" and c % 4:
            raise CudnnUnsupportedError(f"{self.name}: layer {layer.name!r}: {c} input channels; cuDNN's int8 "
                                        f"convolutions need a multiple of 4")
        if self.compute == "fp16_exact" and c * r * s > _EXACT_FP16_TERMS:
            raise CudnnUnsupportedError(f"{self.name}: layer {layer.name!r}: C*R*S = {c * r * s} > "
                                        f"{_EXACT_FP16_TERMS}: fp32 sums of int8 products would round")
        if self.compute == "fp16_exact" and len(layer.inputs) > 4 and layer.inputs[4]:
            # an int8 residual in a half graph: cuDNN's plans disagreed with the emulation on the H100
            raise CudnnUnsupportedError(f"{self.name}: layer {layer.name!r}: the fp16 form takes no residual")
        if self.compute == "fp16_exact" and c >= _FEW_CHANNELS:
            # where the int8 kernels run, fp16 is rarely faster and each cuDNN candidate costs a
            # runtime compile: timing it on every layer tripled ResNet-50's int8 build (328 s)
            raise CudnnUnsupportedError(f"{self.name}: layer {layer.name!r}: {c} channels; the fp16 form is "
                                        f"for fewer than {_FEW_CHANNELS}")
        krsc = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        device_w = cp.asarray(krsc if self.compute == "int8" else krsc.astype(np.float16))
        multiplier = cp.asarray(host_m)
        bias = None if host_b is None else cp.asarray(host_b)
        scale = cp.asarray(np.array([layer.attrs.get("residual_scale", 1.0)], np.float32))
        cw = ConvWeights(w, None, 1, np.dtype(np.int8), activation_of(layer), len(layer.inputs) > 4)
        return _State(layer, cw, device_w, multiplier, bias, scale)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state.layer
        x, y = inputs[0], outputs[0]
        z = inputs[4] if len(inputs) > 4 and len(layer.inputs) > 4 and layer.inputs[4] else None
        _check(self.name, layer, x, z, y)
        geo = geometry(layer, state.weights, x.shape, state.geos)
        check_output(layer, geo, y, self.name)
        if geo.rows == 0:
            return outputs
        key = (tuple(x.shape), None if z is None else z.dtype.name, y.dtype.name)
        plan = state.plans.get(key)
        fresh = plan is None
        if fresh:
            plan = state.plans[key] = _build_plan(self.name, layer, geo, self.compute, z, y, state.bias is not None)
            if self.compute == "fp16_exact":
                state.staged[key] = cupy().empty(x.shape, np.float16)
        if self.compute == "fp16_exact":
            staged = state.staged[key]
            cupy().copyto(staged, x, casting="unsafe")    # int8 -> fp16 is exact; on the run's (current) stream
            x = staged
        pack = {plan.tensors["x"]: x.data.ptr, plan.tensors["w"]: state.w.data.ptr,
                plan.tensors["m"]: state.multiplier.data.ptr, plan.tensors["y"]: y.data.ptr}
        if "b" in plan.tensors:
            pack[plan.tensors["b"]] = state.bias.data.ptr
        if "z" in plan.tensors:
            pack[plan.tensors["z"]] = z.data.ptr
            pack[plan.tensors["zs"]] = state.residual_scale.data.ptr
        handle = _handle()
        cudnn.set_stream(handle=handle, stream=stream.ptr if stream is not None else cupy().cuda.get_current_stream().ptr)
        if fresh:
            _choose_fastest(plan, pack, handle)
        plan.execute(pack, handle)
        return outputs


def _check(tactic: str, layer: Layer, x, z, y) -> None:
    if x.dtype != np.int8 or y.dtype.name not in _CUDNN_TYPES:
        raise TypeError(f"{tactic}: layer {layer.name!r}: needs an int8 input and an int8/float16/float32 output, "
                        f"got {x.dtype} -> {y.dtype}")
    for what, array in (("input", x), ("residual", z), ("output", y)):
        if array is not None and not array.flags.c_contiguous:
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} must be C-contiguous NHWC")
    if z is not None and (z.shape != y.shape or z.dtype.name not in _CUDNN_TYPES):
        raise ValueError(f"{tactic}: layer {layer.name!r}: residual {layer.inputs[4]!r} is {z.dtype}{tuple(z.shape)}, "
                         f"the output {tuple(y.shape)}")


def _build_plan(tactic: str, layer: Layer, geo, compute: str, z, y, has_bias: bool,
                modes: Sequence[str] = ("A", "FALLBACK"), candidates: int = _CANDIDATES) -> _Plan:
    """The graph and its first `candidates` plans that build, from cuDNN's heuristics `modes` lists."""
    dt = cudnn.data_type
    f32 = dt.FLOAT
    io = dt.INT8 if compute == "int8" else dt.HALF
    acc = dt.INT32 if compute == "int8" else f32
    graph = cudnn.pygraph(handle=_handle(), io_data_type=io, intermediate_data_type=f32, compute_data_type=acc)
    tensors = {}
    out = conv_node(graph, tensors, geo, io, acc)
    out.set_data_type(f32)
    channel = dict(dim=[1, geo.k, 1, 1], stride=[geo.k, 1, geo.k, geo.k], data_type=f32)
    tensors["m"] = graph.tensor(name="M", **channel)
    out = graph.mul(a=out, b=tensors["m"], compute_data_type=f32, name="multiplier")
    if has_bias:
        tensors["b"] = graph.tensor(name="B", **channel)
        out = graph.bias(input=out, bias=tensors["b"], compute_data_type=f32, name="bias")
    y_dims, y_strides = _nhwc(geo.n, geo.k, geo.p, geo.q)
    if z is not None:
        tensors["z"] = graph.tensor(name="Z", dim=y_dims, stride=y_strides,
                                    data_type=getattr(dt, _CUDNN_TYPES[z.dtype.name]))
        tensors["zs"] = graph.tensor(name="ZS", dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32)
        scaled = graph.mul(a=tensors["z"], b=tensors["zs"], compute_data_type=f32, name="residual_scale")
        out = graph.add(a=out, b=scaled, compute_data_type=f32, name="residual")
    out = _activation(graph, out, activation_of(layer), f32)
    out.set_output(True).set_dim(y_dims).set_stride(y_strides).set_data_type(getattr(dt, _CUDNN_TYPES[y.dtype.name]))
    tensors["y"] = out
    what = (f"{tactic}: layer {layer.name!r} (NHWC x {geo.n}x{geo.h}x{geo.w}x{geo.c}, w {geo.k}x{geo.c}x{geo.r}x"
            f"{geo.s}, output {y.dtype}, residual {None if z is None else z.dtype})")
    try:
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([getattr(cudnn.heur_mode, mode) for mode in modes])
        graph.check_support()
    except Exception as exc:           # the frontend raises its own types
        raise CudnnUnsupportedError(f"{what}: cuDNN has no plan: {type(exc).__name__}: {exc}") from exc
    built = []
    for index in range(min(int(graph.get_execution_plan_count()), candidates)):
        try:
            graph.build_plan_at_index(index)
            built.append(index)
        except Exception:              # unsupported candidates fail here: skipped
            continue
    if not built:
        raise CudnnUnsupportedError(f"{what}: no candidate plan builds")
    size = max(int(graph.get_workspace_size_plan_at_index(i)) for i in built)
    return _Plan(graph, tensors, built, cupy().empty(max(1, size), dtype=np.uint8), built[0])


if cudnn is not None:
    register(CudnnQConv("int8"))
    register(CudnnQConv("fp16_exact"))
