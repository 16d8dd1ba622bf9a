"""cuDNN 9 through its Python frontend (`nvidia-cudnn-frontend`): one fused plan per conv layer,

    conv_fprop -> (add residual) -> bias -> activation

on NHWC fp16 (fp32 accumulate) or fp32 tensors, given raw device pointers. cuDNN's runtime
fusion engines are the fastest convolutions we have on most layers, and the whole ResNet block
tail (bias = folded BN, residual add, ReLU) rides along for free.

The plan depends on the input shape, which `prepare` does not know, so it is built on the first
`run` per input shape (the runtime's warm-up, outside CUDA-graph capture), with its workspace
allocated then; later runs only execute. That first run also times cuDNN's first few candidate
plans on the real buffers and keeps the fastest: the heuristic's first choice was measured up to
30% slower than a later candidate on ResNet-50 layers (H100, batch 256). The handle is one per
thread and device (cuDNN handles must not be shared across threads) and is pointed at the run's
stream before each execute.
fp32 layers deselect engines that use tensor cores or down-convert inputs, so fp32 stays fp32
(TF32 is the "tf32" precision's business). Activations cuDNN has no pointwise mode for
(HardSwish) are refused; a fused graph no engine supports raises `CudnnUnsupportedError` on the
first run, which the autotuner records as a rejection.

Registers nothing when `import cudnn` fails.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import activation_of
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.conv_spec import (conv_operands, ConvGeometry, ConvWeights, check_arrays,
                                                     conv_weights, is_conv2d_nhwc)

try:
    import cudnn
except Exception:                      # not installed, or its libraries fail to load: no cuDNN tactics
    cudnn = None

__all__ = ["CudnnConv", "CudnnUnsupportedError"]

# activation codes (kernels/epilogue.cuh) cuDNN has a pointwise mode for
_ACTIVATIONS = {0: "none", 1: "relu", 2: "clip", 3: "leaky_relu", 4: "sigmoid", 5: "tanh", 6: "swish",
                8: "gelu", 9: "gelu_approx_tanh"}
_HANDLES = threading.local()
_PLAN_CANDIDATES = 8          # heuristic plans built and timed on the first run of a shape


class CudnnUnsupportedError(ValueError):
    """cuDNN has no engine for this fused graph (shape, dtype, activation)."""


def _handle() -> int:
    by_device = getattr(_HANDLES, "by_device", None)
    if by_device is None:
        by_device = _HANDLES.by_device = {}
    device = cupy().cuda.Device().id
    if device not in by_device:
        by_device[device] = cudnn.create_handle()
    return by_device[device]


@dataclasses.dataclass
class _Plan:
    graph: Any
    tensors: dict          # "x", "w", "b", "z", "y" -> frontend tensor
    candidates: list       # indices of the plans that built
    workspace: Any = None
    index: int = -1        # the plan run, chosen on the first run

    def execute(self, pack: dict, handle, index: int | None = None) -> None:
        self.graph.execute_plan_at_index(pack, self.workspace.data.ptr, self.index if index is None else index,
                                         handle=handle)


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: ConvWeights
    w: Any                 # device KRSC weight in the io dtype
    bias: Any              # device [K] in the io dtype, or None
    plans: dict = dataclasses.field(default_factory=dict)     # (x shape, residual?) -> _Plan
    geos: dict = dataclasses.field(default_factory=dict)


class CudnnConv(CudaTactic):
    name = "cudnn.conv_fused"
    source = "cudnn"

    def supports(self, layer: Layer, precision: str) -> bool:
        return is_conv2d_nhwc(layer, precision) and activation_of(layer)[0] in _ACTIVATIONS

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cp = cupy()
        cw = conv_weights(layer, weights, self.name)
        w = cp.asarray(np.ascontiguousarray(cw.w.transpose(0, 2, 3, 1)))          # KRSC memory, dims KCRS
        bias = None if cw.bias is None else cp.asarray(cw.bias.astype(cw.dtype))
        return _State(layer, cw, w, bias)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, cw, x, z, y, geo = conv_operands(self.name, state, inputs, outputs)
        check_arrays(self.name, layer, cw, x, z, y)
        if geo.rows == 0 or geo.k == 0:
            return outputs
        key = (tuple(x.shape), z is not None)
        plan = state.plans.get(key)
        fresh = plan is None
        if fresh:
            plan = state.plans[key] = _build_plan(layer, cw, geo, z is not None)
        pack = {plan.tensors["x"]: x.data.ptr, plan.tensors["w"]: state.w.data.ptr, plan.tensors["y"]: y.data.ptr}
        if "b" in plan.tensors:
            pack[plan.tensors["b"]] = state.bias.data.ptr
        if "z" in plan.tensors:
            pack[plan.tensors["z"]] = z.data.ptr
        handle = _handle()
        stream_ptr = stream.ptr if stream is not None else cupy().cuda.get_current_stream().ptr
        cudnn.set_stream(handle=handle, stream=stream_ptr)
        if fresh:
            _choose_fastest(plan, pack, handle)
        plan.execute(pack, handle)
        return outputs


def _nhwc(n: int, c: int, h: int, w: int) -> tuple[list[int], list[int]]:
    """cuDNN dims (always N, C, H, W) and the strides of channels-last memory."""
    return [n, c, h, w], [h * w * c, 1, w * c, c]


def _build_plan(layer: Layer, cw: ConvWeights, geo: ConvGeometry, has_residual: bool) -> _Plan:
    io = cudnn.data_type.HALF if cw.dtype == np.float16 else cudnn.data_type.FLOAT
    f32 = cudnn.data_type.FLOAT
    handle = _handle()
    graph = cudnn.pygraph(handle=handle, io_data_type=io, intermediate_data_type=f32, compute_data_type=f32)
    tensors = {}
    out = conv_node(graph, tensors, geo, io, f32)
    cg = geo.c // geo.group
    y_dims, y_strides = _nhwc(geo.n, geo.k, geo.p, geo.q)
    if has_residual:
        tensors["z"] = graph.tensor(name="Z", dim=y_dims, stride=y_strides, data_type=io)
        out = graph.add(a=out, b=tensors["z"], compute_data_type=f32, name="residual")
    if cw.bias is not None:
        tensors["b"] = graph.tensor(name="B", dim=[1, geo.k, 1, 1], stride=[geo.k, 1, geo.k, geo.k], data_type=io)
        out = graph.bias(input=out, bias=tensors["b"], compute_data_type=f32, name="bias")
    out = _activation(graph, out, cw.activation, f32)
    out.set_output(True).set_dim(y_dims).set_stride(y_strides).set_data_type(io)
    tensors["y"] = out
    what = (f"cudnn.conv_fused: layer {layer.name!r} ({layer.precision}, NHWC x {geo.n}x{geo.h}x{geo.w}x{geo.c}, "
            f"w {geo.k}x{cg}x{geo.r}x{geo.s}, group {geo.group}, activation code {cw.activation[0]}, "
            f"residual {has_residual})")
    try:
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        if cw.dtype == np.float32 and layer.precision == "fp32":   # filters act on the plans just created
            graph.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE, cudnn.numerical_note.DOWN_CONVERT_INPUTS])
        graph.check_support()
    except Exception as exc:           # the frontend raises its own types (cudnnGraphNotSupportedError, ...)
        raise CudnnUnsupportedError(f"{what}: cuDNN has no plan: {type(exc).__name__}: {exc}") from exc
    candidates, errors = [], []
    for index in range(min(int(graph.get_execution_plan_count()), _PLAN_CANDIDATES)):
        try:
            graph.build_plan_at_index(index)      # filtered-out or unsupported plans fail here: skipped
            candidates.append(index)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    if not candidates:
        raise CudnnUnsupportedError(f"{what}: no candidate plan builds: {'; '.join(errors)[:400]}")
    size = max(int(graph.get_workspace_size_plan_at_index(i)) for i in candidates)
    return _Plan(graph, tensors, candidates, cupy().empty(max(1, size), dtype=np.uint8), candidates[0])


def conv_node(graph, tensors: dict, geo: ConvGeometry, io, compute):
    """X (NHWC) and W (KRSC) tensors, added to `tensors`, and the conv_fprop reading them."""
    dims, strides = _nhwc(geo.n, geo.c, geo.h, geo.w)
    tensors["x"] = graph.tensor(name="X", dim=dims, stride=strides, data_type=io)
    cg = geo.c // geo.group
    tensors["w"] = graph.tensor(name="W", dim=[geo.k, cg, geo.r, geo.s],
                                stride=[geo.r * geo.s * cg, 1, geo.s * cg, cg], data_type=io)
    pads = dict(stride=[geo.stride_h, geo.stride_w], dilation=[geo.dil_h, geo.dil_w], compute_data_type=compute)
    pre, post = [geo.pad_top, geo.pad_left], [geo.pad_bottom, geo.pad_right]
    if pre == post:
        return graph.conv_fprop(image=tensors["x"], weight=tensors["w"], padding=pre, name="conv", **pads)
    return graph.conv_fprop(image=tensors["x"], weight=tensors["w"], pre_padding=pre, post_padding=post,
                            name="conv", **pads)


def _choose_fastest(plan: _Plan, pack: dict, handle, repeats: int = 5) -> None:
    """Time each candidate on the run's own buffers and stream (first run only: it synchronizes)."""
    if len(plan.candidates) == 1:
        return
    cp = cupy()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    best = None
    for index in plan.candidates:
        try:
            plan.execute(pack, handle, index)                  # warm-up
            samples = []
            for _ in range(repeats):
                start.record()
                plan.execute(pack, handle, index)
                stop.record()
                stop.synchronize()
                samples.append(cp.cuda.get_elapsed_time(start, stop))
        except Exception:                                       # a plan that fails to run is not a candidate
            continue
        ms = sorted(samples)[len(samples) // 2]
        if best is None or ms < best[0]:
            best = (ms, index)
    if best is None:
        raise CudnnUnsupportedError(f"cudnn.conv_fused: none of plans {plan.candidates} runs")
    plan.index = best[1]


def _activation(graph, out, activation: tuple[int, float, float], f32):
    code, p0, p1 = activation
    mode = _ACTIVATIONS[code]
    if mode == "none":
        return out
    if mode == "relu":
        return graph.relu(input=out, compute_data_type=f32, name="act")
    if mode == "clip":
        return graph.relu(input=out, lower_clip=p0, upper_clip=p1, compute_data_type=f32, name="act")
    if mode == "leaky_relu":
        return graph.relu(input=out, negative_slope=p0, compute_data_type=f32, name="act")
    if mode == "swish":
        return graph.swish(input=out, swish_beta=1.0, compute_data_type=f32, name="act")
    return getattr(graph, mode)(input=out, compute_data_type=f32, name="act")


if cudnn is not None:
    register(CudnnConv())
