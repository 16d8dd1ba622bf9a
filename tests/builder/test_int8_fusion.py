"""INT8 layer fusion (builder/int8_fusion.py) on the CPU: a residual block quantized by calibration
runs as FusedQConv layers with int8 tensors between them, and gives the numbers of the Q/DQ graph
run as written (BuilderConfig(int8_fusion=False)), the float reference the fusion must not change."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import int8_engine_pair
from workbench.backends.cpu.registry import NodeInfo, lookup


def _block_model(seed=0) -> onnx.ModelProto:
    """conv-relu -> maxpool -> (conv1x1-relu -> conv3x3) + maxpool -> relu -> avgpool -> fc."""
    rng = np.random.default_rng(seed)

    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("w0", (8, 3, 3, 3), 0.3), init("b0", (8,), 0.1), init("w1", (8, 8, 1, 1), 0.3),
             init("b1", (8,), 0.1), init("w2", (8, 8, 3, 3), 0.15), init("b2", (8,), 0.1),
             init("wf", (5, 8), 0.3), init("bf", (5,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("MaxPool", ["r0"], ["p0"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "p0"], ["a2"], name="add"),
             helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def engines():
    return int8_engine_pair(_block_model(), 12)


def test_convolutions_become_integer_layers(engines):
    fused, _ = engines
    ops = [layer.op for layer in fused.layers]
    assert ops.count("FusedQConv") == 4                # three convolutions and the fc (a 1x1 convolution)
    assert not {"Conv", "FusedConv", "Gemm", "GlobalAveragePool"} & set(ops)
    dtypes = fused.tensor_dtypes()
    by_name = {layer.name: layer for layer in fused.layers}
    pool = next(layer for layer in fused.layers if layer.op == "MaxPool")
    assert dtypes[pool.inputs[0]] == "int8" and dtypes[pool.outputs[0]] == "int8"   # moved after its Q
    residual_conv = next(layer for layer in fused.layers if layer.op == "FusedQConv" and len(layer.inputs) == 5)
    assert dtypes[residual_conv.inputs[4]] == "int8" and residual_conv.inputs[4] == pool.outputs[0]
    # the head stays int8: the last convolution quantizes for the int8 average pool, which quantizes
    # for the fc; only the logits are float
    gap = by_name["gap"]
    assert gap.op == "QGlobalAveragePool" and gap.inputs[0] == residual_conv.outputs[0]
    assert residual_conv.attrs["output_dtype"] == TensorProto.INT8 and dtypes[gap.outputs[0]] == "int8"
    fc = by_name["fc"]
    assert fc.op == "FusedQConv" and dtypes[fc.inputs[0]] == "int8" and fc.attrs["output_dtype"] == TensorProto.FLOAT
    assert fused.weights[fc.inputs[1]].shape == (5, 8, 1, 1)
    # the stem quantizes its own output for the pool: no float tensor between them
    stem = next(layer for layer in fused.layers if layer.op == "FusedQConv")
    assert stem.outputs[0] == pool.inputs[0]
    qdq = [layer.op for layer in fused.layers if layer.op in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq == ["QuantizeLinear"]                   # the engine input


def test_fused_numbers_are_the_qdq_graph_numbers(engines):
    fused, reference = engines
    x = {"x": np.random.default_rng(7).standard_normal((4, 3, 12, 12)).astype(np.float32)}
    got = fused.create_context().run(x)["y"]
    want = reference.create_context().run(x)["y"]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_fused_qconv_kernel_is_the_exact_integer_computation():
    """acc = sum of int8 products (exact), float32 epilogue, round half to even, saturate."""
    rng = np.random.default_rng(3)
    x = rng.integers(-127, 128, (2, 16, 5, 5)).astype(np.int8)
    w = rng.integers(-127, 128, (6, 16, 1, 1)).astype(np.int8)
    m = rng.uniform(1e-3, 4e-3, 6).astype(np.float32)
    b = rng.uniform(-9, 9, 6).astype(np.float32)
    z = rng.integers(-127, 128, (2, 6, 5, 5)).astype(np.int8)
    attrs = {"activation": "Relu", "residual_scale": 0.5, "output_dtype": TensorProto.INT8}
    got = lookup("workbench", "FusedQConv")([x, w, m, b, z], attrs, NodeInfo(1))
    acc = np.einsum("nchw,kc->nkhw", x.astype(np.int64), w[:, :, 0, 0].astype(np.int64))
    v = acc.astype(np.float32) * m[None, :, None, None] + b[None, :, None, None] + z.astype(np.float32) * np.float32(0.5)
    want = np.clip(np.rint(np.maximum(v, 0)), -128, 127).astype(np.int8)
    assert got.dtype == np.int8 and np.array_equal(got, want)
    assert (want == 127).any() and (want == 0).any()        # saturation and ReLU both exercised


def test_uint8_qdq_runs_as_written():
    """A Q/DQ without an int8 zero point quantizes to uint8: not what the integer kernels take."""
    from workbench.backends.base import Layer
    from workbench.builder.int8_fusion import fuse_int8_layers
    weights = {"s": np.array(0.1, np.float32), "wq": np.ones((4, 4, 1, 1), np.int8),
               "ws": np.full(4, 0.01, np.float32), "wz": np.zeros(4, np.int8)}
    layers = [Layer(name="q", op="QuantizeLinear", domain="", inputs=["x", "s"], outputs=["xq"], attrs={},
                    opset=17, precision="int8"),
              Layer(name="dq", op="DequantizeLinear", domain="", inputs=["xq", "s"], outputs=["xd"], attrs={},
                    opset=17, precision="int8"),
              Layer(name="wdq", op="DequantizeLinear", domain="", inputs=["wq", "ws", "wz"], outputs=["wd"],
                    attrs={"axis": 0}, opset=17, precision="int8"),
              Layer(name="conv", op="Conv", domain="", inputs=["xd", "wd"], outputs=["y"], attrs={}, opset=17,
                    precision="int8")]
    out = fuse_int8_layers(layers, weights, ["y"])
    assert [layer.op for layer in out] == ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv"]
    assert out[-1].precision == "fp32"


@pytest.mark.gpu
@pytest.mark.parametrize("size", [12, 40])
def test_cuda_int8_engine_runs_on_the_device_and_matches_the_cpu_engine(size):
    """Every layer on a device tactic (no host fallback), int8 tensors between the convolutions,
    outputs within int8's tolerance of the CPU engine's exact emulation."""
    if not wb.backends.cuda_available():
        pytest.skip("no CUDA GPU: the gpu tests run on the lent H100")
    rng = np.random.default_rng(1)
    data = [{"x": rng.standard_normal((4, 3, size, size)).astype(np.float32)} for _ in range(3)]
    table = dict(calibration_data=data, calibrator="minmax", precision="int8", batch_size=8)
    graph = _resized(size)
    cpu = wb.build(graph, wb.BuilderConfig(**table))
    gpu = wb.build(graph, wb.BuilderConfig(backend="cuda", **table))
    tactics = gpu.to_dataframe()["tactic.name"].tolist()
    assert not [t for t in tactics if t.startswith("fallback")], tactics
    assert sum(t.startswith(("cudnn.qconv", "kernels.qgemm")) for t in tactics) == 4     # with the fc
    x = {"x": np.random.default_rng(5).standard_normal((8, 3, size, size)).astype(np.float32)}
    want = cpu.create_context().run(x)["y"]
    for cuda_graph in (True, False):
        got = gpu.create_context(cuda_graph=cuda_graph).run(x)["y"]
        got = got.get() if hasattr(got, "get") else got
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2


def _resized(size: int):
    model = _block_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = size
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = size
    graph, _ = wb.optimize(wb.load(model))
    return graph
