"""cupy.pointwise (generated ElementwiseKernels) against the CPU oracle: PointwiseChain programs,
single ops, broadcasting, fp16, NHWC, bool and int64 values."""
import json

import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS
from workbench.backends.cuda.tactics.pointwise import ops_supported, translate

gpu = pytest.mark.gpu
RNG = np.random.default_rng(0)


def _tactic():
    return next(t for t in TACTICS if t.name == "cupy.pointwise")


def _chain(program, n_inputs, **kw):
    return Layer("chain", "PointwiseChain", [f"x{i}" for i in range(n_inputs)], ["y"],
                 {"program": json.dumps(program)}, domain="workbench", opset=1, **kw)


def _step(op, inputs, domain="", **attrs):
    return {"op": op, "domain": domain, "inputs": inputs, "attrs": attrs}


def test_pointwise_supports_and_translation():
    tactic = _tactic()
    good = _chain([_step("Mul", ["in0", "in1"]), _step("Relu", ["t0"])], 2)
    bad = _chain([_step("Mul", ["in0", "in1"]), _step("Einsum", ["t0"], equation="i->i")], 2)
    assert tactic.supports(good, "fp16") and not tactic.supports(bad, "fp16")
    assert not tactic.supports(good, "int8")
    assert tactic.supports(Layer("a", "Add", ["a", "b"], ["y"], opset=17), "fp32")
    assert not tactic.supports(Layer("a", "Conv", ["a", "b"], ["y"], opset=17), "fp32")
    body = translate([_step("Mul", ["in0", "in1"]), _step("Relu", ["t0"])], ["f", "f"])
    assert "((float)in0) * ((float)in1)" in body and body.endswith("out = (Y)(t1);")
    assert ops_supported([_step("FusedGelu", ["in0"], domain="workbench", approximate="tanh")])


PROGRAMS = {
    "bias_gelu": ([_step("Add", ["in0", "in1"]), _step("FusedGelu", ["t0"], domain="workbench", approximate="none")],
                  [(4, 33, 64), (64,)]),
    "residual_relu_clip": ([_step("Mul", ["in0", "in1"]), _step("Add", ["t0", "in2"]), _step("Relu", ["t1"]),
                            _step("Clip", ["t2", "", "in3"])], [(2, 8, 5, 5), (1, 8, 1, 1), (2, 8, 5, 5), ()]),
    "activations": ([_step("Sigmoid", ["in0"]), _step("Tanh", ["t0"]), _step("Exp", ["t1"]), _step("Log", ["t2"]),
                     _step("LeakyRelu", ["t3"], alpha=0.2), _step("HardSwish", ["t4"]), _step("Erf", ["t5"]),
                     _step("Abs", ["t6"]), _step("Sqrt", ["t7"]),
                     _step("Reciprocal", ["t8"]), _step("Neg", ["t9"]), _step("Pow", ["t10", "in1"]),
                     _step("HardSigmoid", ["t11"]), _step("Softplus", ["t12"]), _step("Gelu", ["t13"], approximate="tanh")],
                    [(3, 100), ()]),
    "div_sub_minmax": ([_step("Div", ["in0", "in1"]), _step("Sub", ["t0", "in0"]), _step("Max", ["t1", "in1", "in0"]),
                        _step("Min", ["t2", "in1"])], [(7, 9), (9,)]),
    "cast_half_inside": ([_step("Cast", ["in0"], to=10), _step("Cast", ["t0"], to=1), _step("Mul", ["t1", "in0"])],
                         [(5, 6)]),
    "compare_where": ([_step("Less", ["in0", "in1"]), _step("Where", ["t0", "in0", "in1"])], [(6, 10), (10,)]),
}


@gpu
@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_chain_matches_oracle(cp, name, precision):
    program, shapes = PROGRAMS[name]
    dtype = np.float16 if precision == "fp16" else np.float32
    xs = [(RNG.standard_normal(s) + (1.5 if name == "activations" and i == 1 else 0)).astype(dtype)
          for i, s in enumerate(shapes)]
    if name == "activations":
        xs[1] = np.array(2.0, dtype)           # Pow exponent: a scalar
    if name == "div_sub_minmax":               # divisors away from 0: no fp16 overflow in one backend only
        xs[1] = (np.sign(xs[1]) * (np.abs(xs[1]) + 1)).astype(dtype)
    layer = _chain(program, len(shapes), precision=precision)
    weights = {f"x{i}": x for i, x in enumerate(xs) if x.ndim <= 1}    # small operands as constants
    assert_matches_oracle(_tactic(), layer, weights, xs)


@gpu
@pytest.mark.parametrize("op,attrs,n", [("Add", {}, 2), ("Mul", {}, 2), ("Sub", {}, 2), ("Div", {}, 2), ("Relu", {}, 1),
                                        ("Sigmoid", {}, 1), ("Tanh", {}, 1), ("Erf", {}, 1), ("Sqrt", {}, 1),
                                        ("Pow", {}, 2), ("LeakyRelu", {"alpha": 0.3}, 1), ("Gelu", {}, 1),
                                        ("Equal", {}, 2), ("Greater", {}, 2), ("PRelu", {}, 2)])
def test_single_op(cp, op, attrs, n):
    xs = [np.abs(RNG.standard_normal((4, 3, 5))).astype(np.float32) if op in ("Sqrt", "Pow")
          else RNG.integers(-2, 3, (4, 3, 5)).astype(np.float32) if op == "Equal"
          else RNG.standard_normal((4, 3, 5)).astype(np.float32)]
    if n == 2:
        xs.append(RNG.integers(-2, 3, (3, 1)).astype(np.float32) if op == "Equal"
                  else RNG.standard_normal((3, 1)).astype(np.float32) + (3 if op == "Div" else 0))
    layer = Layer("op", op, [f"x{i}" for i in range(n)], ["y"], attrs, opset=20 if op == "Gelu" else 17)
    assert_matches_oracle(_tactic(), layer, {}, xs)


@gpu
def test_clip_opset6_attributes_and_opset13_inputs(cp):
    x = RNG.standard_normal((8, 9)).astype(np.float16)
    old = Layer("c", "Clip", ["x"], ["y"], {"min": -0.5, "max": 0.7}, opset=6, precision="fp16")
    assert_matches_oracle(_tactic(), old, {}, [x])
    hi = np.array(0.25, np.float16)
    new = Layer("c", "Clip", ["x", "", "hi"], ["y"], opset=13, precision="fp16")
    assert_matches_oracle(_tactic(), new, {"hi": hi}, [x, None, hi])


@gpu
def test_integer_add_is_exact(cp):
    a = RNG.integers(-2**40, 2**40, (5, 7)).astype(np.int64)
    b = RNG.integers(-2**40, 2**40, (7,)).astype(np.int64)
    assert_matches_oracle(_tactic(), Layer("a", "Add", ["a", "b"], ["y"], opset=17), {}, [a, b])


@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_nhwc_chain_with_scalar_constant(cp, precision):
    dtype = np.float16 if precision == "fp16" else np.float32
    x, r = (RNG.standard_normal((2, 5, 6, 8)).astype(dtype) for _ in range(2))     # NHWC storage
    scale = np.array(0.5, dtype)
    program = [_step("Mul", ["in0", "in2"]), _step("Add", ["t0", "in1"]), _step("Relu", ["t1"])]
    layer = _chain(program, 3, precision=precision, layout="NHWC")
    assert_matches_oracle(_tactic(), layer, {"x2": scale}, [x, r, scale])


@gpu
def test_nhwc_per_channel_constant_is_relaid_out(cp):
    x = RNG.standard_normal((2, 5, 6, 8)).astype(np.float32)          # NHWC of [2, 8, 5, 6]
    bias = RNG.standard_normal((1, 8, 1, 1)).astype(np.float32)       # an NCHW per-channel constant
    layer = Layer("a", "Add", ["x", "bias"], ["y"], opset=17, layout="NHWC")
    assert_matches_oracle(_tactic(), layer, {"bias": bias}, [x, bias])


@gpu
def test_pointwise_is_capturable(cp):
    from graph_checks import assert_capturable
    program, shapes = PROGRAMS["residual_relu_clip"]
    xs = [RNG.standard_normal(s).astype(np.float16) for s in shapes]
    assert_capturable(_tactic(), _chain(program, len(shapes), precision="fp16"), {}, xs)
