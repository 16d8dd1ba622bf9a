"""Checks shared by the pass tests: same outputs before and after a rewrite, idempotence, and the
small ONNX models most tests start from. Imported as `from pass_checks import ...` (pytest puts
tests/passes on sys.path for the test modules here; no conftest.py, so `conftest` stays tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import rel_l2

__all__ = ["assert_idempotent", "assert_same_outputs", "assert_sound_rewrite", "float_io_model", "x_model"]


def assert_same_outputs(original: wb.Graph, optimized: wb.Graph, feeds: dict | None = None, *,
                        config: wb.BuilderConfig | None = None, tol: float = 1e-6, seed: int = 0,
                        check_dtype: bool = False) -> None:
    """Build both graphs with the CPU engine, run `feeds` and compare every output by relative L2.
    Without `feeds`: standard-normal float32 for the first input, symbolic dims taken as 2."""
    if feeds is None:
        spec = original.inputs[0]
        x = np.random.default_rng(seed).standard_normal([d if isinstance(d, int) else 2 for d in spec.shape])
        feeds = {spec.name: x.astype(np.float32)}
    want = wb.build(original, config).create_context().run(feeds)
    got = wb.build(optimized, config).create_context().run(feeds)
    assert sorted(got) == sorted(want)
    for name in want:
        if check_dtype:
            assert got[name].dtype == want[name].dtype, name
        assert rel_l2(got[name], want[name]) <= tol, name


def assert_idempotent(optimized: wb.Graph, passes, *, same_ops: bool = True) -> None:
    """Optimizing again with the same passes rewrites nothing (and, with `same_ops`, changes no op count)."""
    again, second = wb.optimize(optimized, only=list(passes))
    assert second.to_dataframe().empty
    if same_ops:
        assert again.op_counts() == optimized.op_counts()


def assert_sound_rewrite(original: wb.Graph, optimized: wb.Graph, passes, feeds: dict | None = None, *,
                         config: wb.BuilderConfig | None = None, tol: float = 1e-6, seed: int = 0,
                         check_dtype: bool = False) -> onnx.ModelProto:
    """The optimized graph passes the full ONNX checker, keeps the outputs and is idempotent under
    `passes`; returns its proto."""
    proto = optimized.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert_same_outputs(original, optimized, feeds, config=config, tol=tol, seed=seed, check_dtype=check_dtype)
    assert_idempotent(optimized, passes)
    return proto


def x_model(nodes, outputs, inits=(), *, x_shape, opsets=(("", 17),), ir_version=8) -> onnx.ModelProto:
    """One float input "x" of `x_shape`; outputs by name only (types inferred); inits as (name, array).
    Before IR 4 every initializer is also listed as a graph input."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    if ir_version < 4:
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inits]
    graph = helper.make_graph(nodes, "g", inputs, [onnx.ValueInfoProto(name=o) for o in outputs],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             ir_version=ir_version)


def float_io_model(nodes, inputs, outputs, inits=(), *, opsets=(("", 17),), ir_version=8) -> onnx.ModelProto:
    """Float inputs and outputs given as (name, shape); inits as (name, array)."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             ir_version=ir_version)
