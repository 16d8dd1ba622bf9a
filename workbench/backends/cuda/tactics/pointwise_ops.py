"""The op-translation table of the generated elementwise kernels (pointwise.py): each step of a
program (ir/fused/pointwise.py) becomes one line of C++ on locals, so the whole chain reads its
inputs once and writes once:

    [{"op": "Mul", "inputs": ["in0", "in1"]}, {"op": "Relu", "inputs": ["t0"]}]
        ==>  float t0 = ((float)in0 * (float)in1);  float t1 = (t0 < 0.f ? 0.f : t0);  out = (Y)(t1);

Values are float (fp16 and fp32 inputs both compute in fp32 and round once at the store; the
oracle rounds fp16 at every step, well within fp16's tolerance), bool (comparisons, logic) or
int64 (when every operand is an integer, so shape arithmetic stays exact).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from workbench.ir.dtypes import np_dtype

__all__ = ["translate", "ops_supported"]

_PREAMBLE = r"""
#include <cuda_fp16.h>
__device__ __forceinline__ float wb_max(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float wb_min(float a, float b) { return (a != a || a < b) ? a : b; }
__device__ __forceinline__ float wb_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
// float32 -> TF32 (10 mantissa bits), round to nearest even, as the CPU oracle's round_to_tf32
__device__ __forceinline__ float wb_round_tf32(float x) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;               // inf and nan unchanged
    u += 0xfffu + ((u >> 13) & 1u);
    return __uint_as_float(u & 0xffffe000u);
}
__device__ __forceinline__ float wb_softplus(float x) { return x > 0.f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
__device__ __forceinline__ float wb_half(float x) { return __half2float(__float2half_rn(x)); }
__device__ __forceinline__ float wb_sign(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : x); }
__device__ __forceinline__ float wb_gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float wb_gelu_tanh(float x) {
  return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
"""


def _lit(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        return "__int_as_float(0x7f800000)" if value > 0 else "__int_as_float(0xff800000)"
    return f"{value!r}f" if "e" in repr(value) or "." in repr(value) else f"{value!r}.f"


def _f(v) -> str:
    return v[0] if v[1] == "f" else f"((float)({v[0]}))"


def _b(v) -> str:
    return v[0] if v[1] == "b" else f"(({v[0]}) != 0)"


def _i(v) -> str:
    return v[0] if v[1] == "i" else f"((long long)({v[0]}))"


def _arith(fmt_float: str, fmt_int: str | None = None):
    """A binary op: integer math when both operands are int64 and an integer form exists."""
    def step(args, attrs, opset):
        a, b = args[0], args[1]
        if fmt_int is not None and a[1] == "i" and b[1] == "i":
            return fmt_int.format(_i(a), _i(b)), "i"
        return fmt_float.format(_f(a), _f(b)), "f"
    return step


def _unary(fmt: str, fmt_int: str | None = None):
    def step(args, attrs, opset):
        x = args[0]
        if fmt_int is not None and x[1] == "i":
            return fmt_int.format(_i(x)), "i"
        return fmt.format(_f(x)), "f"
    return step


def _variadic(fmt_float: str, fmt_int: str):
    def step(args, attrs, opset):
        present = [a for a in args if a is not None]
        acc = present[0]
        for other in present[1:]:
            acc = _arith(fmt_float, fmt_int)([acc, other], attrs, opset)
        return acc
    return step


def _compare(sym: str):
    def step(args, attrs, opset):
        a, b = args
        if a[1] == "i" and b[1] == "i":
            return f"({_i(a)} {sym} {_i(b)})", "b"
        return f"({_f(a)} {sym} {_f(b)})", "b"
    return step


def _clip(args, attrs, opset):
    x = _f(args[0])
    if opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
        lo = None if lo is None else _lit(lo)
        hi = None if hi is None else _lit(hi)
    else:
        lo = _f(args[1]) if len(args) > 1 and args[1] is not None else None
        hi = _f(args[2]) if len(args) > 2 and args[2] is not None else None
    if lo is not None:
        x = f"wb_max({x}, {lo})"
    if hi is not None:
        x = f"wb_min({x}, {hi})"
    return x, "f"


_SMALL_INTS = {"int32": "int", "int16": "short", "int8": "signed char", "uint32": "unsigned int",
               "uint16": "unsigned short", "uint8": "unsigned char"}


def _cast(args, attrs, opset):
    to = np_dtype(int(attrs["to"]))
    x = args[0]
    if to == np.float16:
        return f"wb_half({_f(x)})", "f"
    if to.kind == "f" and to.itemsize >= 4:
        return _f(x), "f"
    if to == np.bool_:
        return _b(x), "b"
    if to.kind in "iu" and to.itemsize == 8:
        return _i(x), "i"
    if to.kind in "iu":
        return f"((long long)({_SMALL_INTS[to.name]})({_i(x)}))", "i"
    raise NotImplementedError(f"Cast to {to.name}")


def _where(args, attrs, opset):
    c, x, y = args
    if x[1] == "i" and y[1] == "i":
        return f"({_b(c)} ? {_i(x)} : {_i(y)})", "i"
    return f"({_b(c)} ? {_f(x)} : {_f(y)})", "f"


def _gelu(args, attrs, opset):
    fn = "wb_gelu_tanh" if attrs.get("approximate", "none") == "tanh" else "wb_gelu"
    return f"{fn}({_f(args[0])})", "f"


def _act(fmt: str, **defaults):
    """A float activation with attribute parameters, e.g. LeakyRelu's alpha."""
    def step(args, attrs, opset):
        params = {k: _lit(attrs.get(k, v)) for k, v in defaults.items()}
        return fmt.format(x=_f(args[0]), **params), "f"
    return step


_STEPS = {
    ("", "Add"): _arith("({} + {})", "({} + {})"),
    ("", "Sub"): _arith("({} - {})", "({} - {})"),
    ("", "Mul"): _arith("({} * {})", "({} * {})"),
    ("", "Div"): _arith("({} / {})", "({} / {})"),
    ("", "Pow"): _arith("powf({}, {})"),
    ("", "Max"): _variadic("wb_max({}, {})", "max({}, {})"),
    ("", "Min"): _variadic("wb_min({}, {})", "min({}, {})"),
    ("", "Sum"): _variadic("({} + {})", "({} + {})"),
    ("", "Relu"): _unary("({0} < 0.f ? 0.f : {0})", "({0} < 0 ? 0LL : {0})"),
    ("", "Neg"): _unary("(-{})", "(-{})"),
    ("", "Abs"): _unary("fabsf({})", "llabs({})"),
    ("", "Sigmoid"): _unary("wb_sigmoid({})"),
    ("", "Tanh"): _unary("tanhf({})"),
    ("", "Exp"): _unary("expf({})"),
    ("", "Log"): _unary("logf({})"),
    ("", "Sqrt"): _unary("sqrtf({})"),
    ("", "Reciprocal"): _unary("(1.f / {})"),
    ("", "Erf"): _unary("erff({})"),
    ("", "Floor"): _unary("floorf({})", "{}"),
    ("", "Ceil"): _unary("ceilf({})", "{}"),
    ("", "Round"): _unary("rintf({})", "{}"),
    ("", "Sign"): _unary("wb_sign({})"),
    ("", "Sin"): _unary("sinf({})"),
    ("", "Cos"): _unary("cosf({})"),
    ("", "Softplus"): _unary("wb_softplus({})"),
    ("", "Softsign"): _unary("({0} / (1.f + fabsf({0})))"),
    ("", "Mish"): _unary("({0} * tanhf(wb_softplus({0})))"),
    ("", "Clip"): _clip,
    ("", "LeakyRelu"): _act("({x} < 0.f ? {x} * {alpha} : {x})", alpha=0.01),
    ("", "Elu"): _act("({x} < 0.f ? {alpha} * expm1f({x}) : {x})", alpha=1.0),
    ("", "ThresholdedRelu"): _act("({x} > {alpha} ? {x} : 0.f)", alpha=1.0),
    ("", "HardSigmoid"): _act("wb_min(wb_max({alpha} * {x} + {beta}, 0.f), 1.f)", alpha=0.2, beta=0.5),
    ("", "HardSwish"): _act("({x} * wb_min(wb_max({x} / 6.f + 0.5f, 0.f), 1.f))"),
    ("", "Gelu"): _gelu,
    ("workbench", "FusedGelu"): _gelu,
    ("workbench", "RoundTF32"): _unary("wb_round_tf32({})"),
    ("", "PRelu"): lambda args, attrs, opset: (f"({_f(args[0])} < 0.f ? {_f(args[0])} * {_f(args[1])} : "
                                               f"{_f(args[0])})", "f"),
    ("", "Cast"): _cast,
    ("", "Identity"): lambda args, attrs, opset: args[0],
    ("", "Where"): _where,
    ("", "Equal"): _compare("=="),
    ("", "Less"): _compare("<"),
    ("", "Greater"): _compare(">"),
    ("", "LessOrEqual"): _compare("<="),
    ("", "GreaterOrEqual"): _compare(">="),
    ("", "And"): lambda args, attrs, opset: (f"({_b(args[0])} && {_b(args[1])})", "b"),
    ("", "Or"): lambda args, attrs, opset: (f"({_b(args[0])} || {_b(args[1])})", "b"),
    ("", "Xor"): lambda args, attrs, opset: (f"({_b(args[0])} != {_b(args[1])})", "b"),
    ("", "Not"): lambda args, attrs, opset: (f"(!{_b(args[0])})", "b"),
    ("", "IsNaN"): lambda args, attrs, opset: (f"isnan({_f(args[0])})", "b"),
}
_OPSETS = {"": 17, "workbench": 1}          # the opsets the CPU oracle runs chain steps at
_C_TYPES = {"f": "float", "b": "bool", "i": "long long"}


def translate(program: list[dict], input_kinds: Sequence[str], opsets: dict | None = None) -> str:
    """The C++ body of one ElementwiseKernel for `program`, inputs `in0..` of the given kinds
    ("f", "b", "i") and the output `out` of type `Y`. NotImplementedError for an op it lacks."""
    opsets = opsets or _OPSETS
    lines, values = [], []
    for index, step in enumerate(program):
        domain = step.get("domain", "") or ""
        domain = "" if domain == "ai.onnx" else domain
        fn = _STEPS.get((domain, step["op"]))
        if fn is None:
            raise NotImplementedError(f"no GPU translation for {domain or 'ai.onnx'}::{step['op']}")
        args = []
        for ref in step["inputs"]:
            if not ref:
                args.append(None)
            elif ref.startswith("in"):
                kind = input_kinds[int(ref[2:])]       # read as float/bool/int64 whatever the storage
                args.append((f"(({_C_TYPES[kind]}){ref})", kind))
            else:
                args.append(values[int(ref[1:])])
        expr, kind = fn(args, step.get("attrs", {}) or {}, opsets.get(domain, step.get("opset", 1)))
        lines.append(f"{_C_TYPES[kind]} t{index} = {expr};")
        values.append((f"t{index}", kind))
    lines.append(f"out = (Y)({values[-1][0]});")
    return "\n".join(lines)


def ops_supported(program: list[dict]) -> bool:
    try:
        translate(program, ["f"] * 64)
        return True
    except (NotImplementedError, KeyError, IndexError, ValueError, TypeError):
        return False
