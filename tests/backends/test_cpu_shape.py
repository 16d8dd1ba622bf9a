"""CPU shape/indexing kernels against onnxruntime on the patterns real models use and onnx's node
tests barely cover (shape-computation chains, negative-step slices, NCHW resizes, dtypes)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import workbench.backends.cpu  # noqa: F401  (registers the kernels)
from workbench.backends.cpu.registry import NodeInfo, lookup

RNG = np.random.default_rng(0)
I64 = np.int64


def _model(nodes, feeds, outputs, opset, inits=()):
    vi = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
          for n, v in feeds.items()]
    graph = helper.make_graph(nodes, "g", vi, [onnx.ValueInfoProto(name=o) for o in outputs],
                              initializer=[numpy_helper.from_array(v, n) for n, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)  # fills in the output types onnxruntime needs


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _cpu(model, feeds):
    opset = {o.domain: o.version for o in model.opset_import}[""]
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer} | dict(feeds)
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        ins = [env[i] if i else None for i in n.input]
        res = lookup("", n.op_type)(ins, attrs, NodeInfo(opset, len(n.output), n.name))
        for name, r in zip(n.output, res if isinstance(res, (list, tuple)) else [res]):
            env[name] = np.asarray(r)
    return [env[o.name] for o in model.graph.output]


def check(op, inputs, attrs=None, opset=17, n_out=1, consts=(), exact=False, atol=1e-5):
    """One-node model: `inputs` are graph inputs ((name, array) pairs), `consts` initializers."""
    feeds = dict(inputs)
    names = [n for n, _ in inputs] + [n for n, _ in consts]
    outs = [f"y{i}" for i in range(n_out)]
    model = _model([helper.make_node(op, names, outs, **(attrs or {}))], feeds, outs, opset, consts)
    for got, want in zip(_cpu(model, feeds), _ort(model, feeds)):
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
        if exact or want.dtype.kind not in "f":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-5, atol=atol)


def test_bert_shape_chain():
    # input_ids (B, S) -> Shape -> Gather(0), Gather(1) -> Unsqueeze -> Concat(B, S, 12, 64) -> Reshape
    x = RNG.standard_normal((2, 7, 768)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["t"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["tu"]),
        helper.make_node("Concat", ["bu", "tu", "heads"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3]),
        helper.make_node("Shape", ["y"], ["ys"], start=-2),
    ]
    inits = [("i0", np.array(0, I64)), ("i1", np.array(1, I64)), ("ax0", np.array([0], I64)),
             ("heads", np.array([12, 64], I64))]
    model = _model(nodes, {"x": x}, ["y", "ys"], 17, inits)
    got, want = _cpu(model, {"x": x}), _ort(model, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[1].dtype == I64


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([-1], [-(2**63)], [1], [-1]),
    ([2**63 - 1, 5], [-(2**63), 0], [0, 2], [-2, -3]),
    ([-3, 10], [1, -100], [-1, 0], [-1, -1]),
    ([0], [2**63 - 1], [1], [3]),
    ([4], [-5], [2], [-1]),
])
def test_slice_steps(starts, ends, axes, steps):
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    consts = [(n, np.array(v, I64)) for n, v in
              (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
    check("Slice", [("x", x)], consts=consts, exact=True)


def test_reshape_zero_and_infer():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    check("Reshape", [("x", x)], consts=[("s", np.array([0, -1, 2], I64))], exact=True)
    check("Reshape", [("x", np.zeros((0, 4), np.float32))],
          consts=[("s", np.array([0, 2, 2], I64))], attrs={"allowzero": 1}, opset=14, exact=True)


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.bool_])
def test_transpose_keeps_dtype(dtype):
    x = (RNG.standard_normal((2, 3, 4, 5)) * 3).astype(dtype)
    check("Transpose", [("x", x)], attrs={"perm": [0, 3, 1, 2]}, exact=True)


def _resize_consts(x, scales=None, sizes=None):
    c = [("roi", np.array([], np.float32)), ("scales", np.array(scales or [], np.float32))]
    return c + ([("sizes", np.array(sizes, I64))] if sizes else [])


@pytest.mark.parametrize("mode,ctm,nearest", [
    ("nearest", "asymmetric", "floor"),
    ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "align_corners", "round_prefer_ceil"),
    ("nearest", "tf_half_pixel_for_nn", "ceil"),
    ("linear", "half_pixel", None),
    ("linear", "pytorch_half_pixel", None),
    ("linear", "align_corners", None),
    ("linear", "asymmetric", None),
    ("cubic", "half_pixel", None),
    ("cubic", "align_corners", None),
])
@pytest.mark.parametrize("scales,sizes", [([1, 1, 2, 2], None), ([1, 1, 0.5, 0.75], None),
                                          (None, [2, 3, 9, 5]), (None, [2, 3, 1, 13])])
def test_resize_nchw(mode, ctm, nearest, scales, sizes):
    x = RNG.standard_normal((2, 3, 6, 8)).astype(np.float32)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if nearest:
        attrs["nearest_mode"] = nearest
    check("Resize", [("x", x)], attrs, opset=13, consts=_resize_consts(x, scales, sizes), atol=1e-4)


def test_resize_float16_and_uint8():
    x = RNG.standard_normal((1, 2, 5, 5)).astype(np.float16)
    check("Resize", [("x", x)], {"mode": "nearest"}, consts=_resize_consts(x, [1, 1, 3, 3]), exact=True)
    img = RNG.integers(0, 255, (1, 3, 4, 6), dtype=np.uint8)
    check("Resize", [("x", img)], {"mode": "nearest"}, consts=_resize_consts(img, [1, 1, 2, 1.5]))


def test_resize_opset10_and_upsample():
    x = RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)
    check("Resize", [("x", x)], {"mode": "nearest"}, opset=10,
          consts=[("s", np.array([1, 1, 2, 3], np.float32))])
    check("Resize", [("x", x)], {"mode": "linear"}, opset=10,
          consts=[("s", np.array([1, 1, 2, 0.5], np.float32))])
    check("Upsample", [("x", x)], {"mode": "nearest"}, opset=9,
          consts=[("s", np.array([1, 1, 2, 2], np.float32))])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_modes(mode):
    x = RNG.standard_normal((1, 3, 5, 6)).astype(np.float32)
    check("Pad", [("x", x)], {"mode": mode}, exact=True,
          consts=[("p", np.array([0, 0, 2, -1, 0, 1, 1, 3], I64)), ("v", np.array(1.5, np.float32))])


def test_split_concat_expand_tile():
    x = RNG.standard_normal((2, 10, 3)).astype(np.float32)
    check("Split", [("x", x)], {"axis": 1}, n_out=3, consts=[("s", np.array([2, 5, 3], I64))])
    check("Split", [("x", x)], {"axis": -2, "num_outputs": 3}, opset=18, n_out=3)
    check("Concat", [("a", x), ("b", x[:, :0]), ("c", x[:, :4])], {"axis": -2}, exact=True)
    check("Expand", [("x", x[:, :1])], consts=[("s", np.array([3, 1, 1, 1], I64))], exact=True)
    check("Tile", [("x", x)], consts=[("r", np.array([2, 1, 3], I64))], exact=True)


def test_gathers_and_scatters():
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    check("Gather", [("x", x), ("i", np.array([[0, -1], [3, 2]], I64))], {"axis": 1}, exact=True)
    check("Gather", [("x", x), ("i", np.array(-2, I64))], exact=True)
    check("GatherND", [("x", x), ("i", np.array([[[1], [-2]], [[0], [4]], [[3], [3]], [[0], [1]]], I64))],
          {"batch_dims": 1}, exact=True)
    idx = RNG.integers(-4, 4, (3, 5, 6))
    check("GatherElements", [("x", x), ("i", idx)], {"axis": 0}, exact=True)
    upd = RNG.standard_normal((3, 5, 6)).astype(np.float32)
    for red in ("add", "mul", "max", "min"):
        check("ScatterElements", [("x", x), ("i", idx), ("u", upd)], {"axis": 0, "reduction": red}, opset=18)
    check("ScatterND", [("x", x), ("i", np.array([[1, 2], [-1, 0]], I64)), ("u", upd[:2, 0])], exact=True)


def test_topk_unique_nonzero():
    x = RNG.integers(0, 4, (3, 8)).astype(np.float32)  # many ties
    for largest in (0, 1):
        check("TopK", [("x", x)], {"axis": 1, "largest": largest}, n_out=2,
              consts=[("k", np.array([5], I64))], exact=True)
    check("Unique", [("x", x)], {"sorted": 0}, n_out=4, exact=True)
    check("Unique", [("x", x)], {"sorted": 1, "axis": 1}, n_out=4, exact=True)
    check("NonZero", [("x", x)], exact=True)
    check("ReverseSequence", [("x", x), ("l", np.array([1, 8, 3], I64))],
          {"batch_axis": 0, "time_axis": 1}, exact=True)
