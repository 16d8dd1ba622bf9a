"""Movement tactics (reformat, transpose, views, slice, concat, split, gather, cast, expand) against
the CPU oracle; views must alias their input."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp, run_tactic  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu
RNG = np.random.default_rng(0)


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def _x(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def test_movement_supports():
    reformat_view = _tactic("cupy.reformat_view")
    def reformat(shape):
        return Layer("r", "Reformat", ["x"], ["y"], {"perm": [0, 2, 3, 1]}, domain="workbench", output_shapes=[shape])
    unit, real, dynamic = reformat((8, 1, 1, 64)), reformat((8, 7, 7, 64)), reformat((None, 1, 1, 64))
    assert reformat_view.supports(unit, "fp16") and reformat_view.supports(dynamic, "fp16")
    assert not reformat_view.supports(real, "fp16")
    assert _tactic("cupy.reformat").supports(real, "fp16")
    nhwc_concat = Layer("c", "Concat", ["a", "b"], ["y"], {"axis": 1}, opset=17, layout="NHWC")
    assert _tactic("cupy.concat").supports(nhwc_concat, "fp16")
    assert not _tactic("cupy.concat").supports(Layer("c", "Concat", ["a"], ["y"], {"axis": 2}, layout="NHWC"), "fp16")
    for name, op in (("cupy.transpose", "Transpose"), ("cupy.slice", "Slice"), ("cupy.gather", "Gather"),
                     ("cupy.expand", "Expand"), ("cupy.reshape_view", "Reshape")):
        assert _tactic(name).supports(Layer("l", op, ["x"], ["y"], opset=17), "fp32"), name
        assert not _tactic(name).supports(Layer("l", op, ["x"], ["y"], opset=17, layout="NHWC"), "fp32"), name
    assert _tactic("cupy.cast").supports(Layer("c", "Cast", ["x"], ["y"], {"to": 10}), "fp16")
    assert not _tactic("cupy.cast").supports(Layer("c", "Cast", ["x"], ["y"], {"to": 16}), "fp16")   # bfloat16
    split_view = _tactic("cupy.split_view")
    lead = Layer("s", "SplitView", ["x"], ["a", "b"], {"axis": 1, "split": [2, 3]}, domain="workbench",
                 output_shapes=[(1, 2, 4), (1, 3, 4)])
    inner = Layer("s", "SplitView", ["x"], ["a", "b"], {"axis": 1, "split": [2, 3]}, domain="workbench",
                  output_shapes=[(2, 2, 4), (2, 3, 4)])
    assert split_view.supports(lead, "fp32") and not split_view.supports(inner, "fp32")
    inner.attrs["strided"] = 1                 # every reader takes strides (merge_attention_projections)
    assert split_view.supports(inner, "fp32")


@gpu
@pytest.mark.parametrize("perm,shape", [([0, 2, 3, 1], (2, 5, 7, 3)), ([0, 3, 1, 2], (2, 7, 3, 5))])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_reformat_copy(cp, perm, shape, dtype):
    layer = Layer("r", "Reformat", ["x"], ["y"], {"perm": perm}, domain="workbench", opset=1)
    assert_matches_oracle(_tactic("cupy.reformat"), layer, {}, [_x(shape, dtype)])


@gpu
def test_reformat_view_aliases(cp):
    x = _x((4, 16, 1, 1))
    layer = Layer("r", "Reformat", ["x"], ["y"], {"perm": [0, 2, 3, 1]}, domain="workbench", opset=1,
                  output_shapes=[(4, 1, 1, 16)], output_dtypes=["float32"])
    tactic = _tactic("cupy.reformat_view")
    assert tactic.supports(layer, "fp32")
    assert_matches_oracle(tactic, layer, {}, [x])
    device = cp.asarray(x)
    (view,) = tactic.view(tactic.prepare(layer, {}), [device], [(4, 1, 1, 16)])
    assert view.data.ptr == device.data.ptr


@gpu
def test_transpose(cp):
    layer = Layer("t", "Transpose", ["x"], ["y"], {"perm": [0, 2, 3, 1]}, opset=17)
    assert_matches_oracle(_tactic("cupy.transpose"), layer, {}, [_x((2, 12, 128, 64), np.float16)])
    assert_matches_oracle(_tactic("cupy.transpose"), Layer("t", "Transpose", ["x"], ["y"], opset=17), {}, [_x((3, 4, 5))])


@gpu
@pytest.mark.parametrize("op,attrs,extra", [
    ("Reshape", {}, np.array([0, -1], np.int64)),
    ("Flatten", {"axis": 2}, None),
    ("Squeeze", {}, np.array([1], np.int64)),
    ("Unsqueeze", {}, np.array([0, 4], np.int64)),
    ("Identity", {}, None)])
@pytest.mark.parametrize("name", ["cupy.reshape_view", "cupy.reshape"])
def test_views_and_their_copies(cp, op, attrs, extra, name):
    x = _x((3, 1, 4, 5))
    inputs, weights, names = [x], {}, ["x"]
    if extra is not None:
        weights["shape"] = extra
        inputs.append(extra)
        names.append("shape")
    assert_matches_oracle(_tactic(name), Layer("v", op, names, ["y"], attrs, opset=17), weights, inputs)


@gpu
@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1, 0], [3, 100], [0, 2], [1, 2]), ([-1], [-100], [1], [-1]), ([2], [5], None, None)])
def test_slice(cp, starts, ends, axes, steps):
    x = _x((4, 6, 9))
    names, inputs, weights = ["x"], [x], {}
    for key, value in (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps)):
        if value is None:
            names.append("")
            inputs.append(None)
            continue
        weights[key] = np.array(value, np.int64)
        names.append(key)
        inputs.append(weights[key])
    while names[-1] == "":
        names.pop(), inputs.pop()
    assert_matches_oracle(_tactic("cupy.slice"), Layer("s", "Slice", names, ["y"], opset=13), weights, inputs)


@gpu
@pytest.mark.parametrize("op,domain", [("Concat", ""), ("ConcatView", "workbench")])
@pytest.mark.parametrize("layout", ["", "NHWC"])
def test_concat(cp, op, domain, layout):
    shapes = [(2, 3, 4, 5), (2, 3, 4, 2), (2, 3, 4, 7)] if layout else [(2, 5, 4, 3), (2, 2, 4, 3), (2, 7, 4, 3)]
    xs = [_x(s, np.float16) for s in shapes]
    layer = Layer("c", op, ["a", "b", "c"], ["y"], {"axis": 1}, domain=domain, opset=17, precision="fp16", layout=layout)
    assert_matches_oracle(_tactic("cupy.concat"), layer, {}, xs)


@gpu
@pytest.mark.parametrize("layout", ["", "NHWC"])
def test_split(cp, layout):
    x = _x((2, 3, 4, 9) if layout else (2, 9, 3, 4))
    sizes = np.array([2, 3, 4], np.int64)
    for op, domain, names, inputs, weights, attrs in (
            ("Split", "", ["x", "split"], [x, sizes], {"split": sizes}, {"axis": 1}),
            ("Split", "", ["x"], [x], {}, {"axis": 1, "num_outputs": 3}),
            ("SplitView", "workbench", ["x"], [x], {}, {"axis": 1, "split": [4, 5]})):
        outs = ["a", "b", "c"] if op == "Split" else ["a", "b"]
        layer = Layer("s", op, names, outs, attrs, domain=domain, opset=18, layout=layout)
        assert_matches_oracle(_tactic("cupy.split"), layer, weights, inputs)


@gpu
def test_split_view_aliases(cp):
    x = _x((1, 9, 3, 4))
    layer = Layer("s", "SplitView", ["x"], ["a", "b"], {"axis": 1, "split": [4, 5]}, domain="workbench", opset=1,
                  output_shapes=[(1, 4, 3, 4), (1, 5, 3, 4)], output_dtypes=["float32", "float32"])
    tactic = _tactic("cupy.split_view")
    assert tactic.supports(layer, "fp32")
    assert_matches_oracle(tactic, layer, {}, [x])


@gpu
@pytest.mark.parametrize("axis,dtype", [(0, np.float16), (1, np.float32)])
def test_gather(cp, axis, dtype):
    data = _x((50, 16), dtype)
    idx = RNG.integers(-50 if axis == 0 else -16, 16, (4, 7)).astype(np.int64)
    layer = Layer("g", "Gather", ["table", "ids"], ["y"], {"axis": axis}, opset=13,
                  precision="fp16" if dtype == np.float16 else "fp32")
    assert_matches_oracle(_tactic("cupy.gather"), layer, {"table": data}, [data, idx])


@gpu
@pytest.mark.parametrize("src,to", [(np.float32, 10), (np.float16, 1), (np.float32, 7), (np.int64, 1), (np.float32, 9),
                                    (np.bool_, 1), (np.int64, 6)])
def test_cast(cp, src, to):
    x = (RNG.standard_normal((3, 11)) * 5).astype(src)
    assert_matches_oracle(_tactic("cupy.cast"), Layer("c", "Cast", ["x"], ["y"], {"to": to}, opset=17), {}, [x])


@gpu
def test_expand(cp):
    x = _x((3, 1, 5))
    shape = np.array([2, 3, 4, 5], np.int64)
    layer = Layer("e", "Expand", ["x", "shape"], ["y"], opset=13)
    assert_matches_oracle(_tactic("cupy.expand"), layer, {"shape": shape}, [x, shape])


@gpu
def test_copies_are_capturable(cp):
    from graph_checks import assert_capturable
    x = _x((2, 6, 5, 4), np.float16)
    assert_capturable(_tactic("cupy.transpose"), Layer("t", "Transpose", ["x"], ["y"], {"perm": [0, 2, 3, 1]}, opset=17),
                      {}, [x])
    assert_capturable(_tactic("cupy.concat"), Layer("c", "Concat", ["a", "b"], ["y"], {"axis": 1}, opset=17), {}, [x, x])
    data, idx = _x((20, 8), np.float16), RNG.integers(0, 20, (3, 5)).astype(np.int64)
    assert_capturable(_tactic("cupy.gather"), Layer("g", "Gather", ["d", "i"], ["y"], opset=13), {"d": data}, [data, idx])


@gpu
def test_strided_split_then_head_reshape_are_views(cp):
    """A merged QKV output [B, S, 3*H*D] split into column blocks, each reshaped to [B, S, H, D]:
    no copy anywhere, the values are the slices'."""
    x = cp.asarray(_x((2, 5, 3 * 4 * 8), np.float16))
    split = Layer("s", "SplitView", ["x"], ["q", "k", "v"], {"axis": -1, "split": [32, 32, 32], "strided": 1},
                  domain="workbench", output_shapes=[(2, 5, 32)] * 3)
    tactic = _tactic("cupy.split_view")
    parts = tactic.view(tactic.prepare(split, {}), [x], [(2, 5, 32)] * 3)
    reshape = _tactic("cupy.reshape_view")
    layer = Layer("r", "Reshape", ["k", "shape"], ["kh"], opset=17)
    (heads,) = reshape.view(reshape.prepare(layer, {}), [parts[1], None], [(2, 5, 4, 8)])
    assert heads.data.ptr == x.data.ptr + 32 * 2 and heads.strides == (5 * 96 * 2, 96 * 2, 8 * 2, 2)
    np.testing.assert_array_equal(cp.asnumpy(heads), cp.asnumpy(x)[:, :, 32:64].reshape(2, 5, 4, 8))
    with pytest.raises(ValueError, match="is a copy"):          # a reshape that mixes rows cannot be a view
        reshape.view(reshape.prepare(layer, {}), [parts[1], None], [(10, 32)])
