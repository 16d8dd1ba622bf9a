"""Convolution shapes taken from real engines (ResNet-50's strided 1x1 downsample convolutions at
the sizes it runs them), for every conv tactic that claims them, against the CPU oracle."""
from __future__ import annotations

import pytest
from conv_cases import SHAPES, conv_case
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

pytestmark = pytest.mark.gpu

CASES = {
    "r50_downsample_s2": (2, 256, 56, 56, 512, (1, 1), {"strides": [2, 2], "pads": [0, 0, 0, 0]}),
    "r50_downsample_s2_b8": (8, 256, 56, 56, 512, (1, 1), {"strides": [2, 2], "pads": [0, 0, 0, 0]}),
    "s2_1x1_c256_small": (2, 256, 8, 8, 512, (1, 1), {"strides": [2, 2], "pads": [0, 0, 0, 0]}),
    "s2_1x1_c32_even": (2, 32, 56, 56, 16, (1, 1), {"strides": [2, 2], "pads": [0, 0, 0, 0]}),
    "r50_3x3_s2": (2, 128, 56, 56, 128, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
}


def _tactics():
    from workbench.backends.cuda.registry import TACTICS
    from workbench.backends.cuda.tactics import conv, conv_direct, conv_igemm  # noqa: F401
    return [t for t in TACTICS if t.name.startswith(("cublas.conv", "kernels.conv", "cudnn.conv"))]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_engine_shapes(cp, case, precision, monkeypatch):
    monkeypatch.setitem(SHAPES, case, CASES[case])
    failures = []
    for tactic in _tactics():
        lay, weights, inputs = conv_case(case, precision)
        if tactic.supports(lay, precision):
            try:
                assert_matches_oracle(tactic, lay, weights, inputs)
            except Exception as exc:                # collect them all: which tactics, not just the first
                if "Unsupported" in type(exc).__name__:
                    continue                        # a library declining a shape is a refusal, not an error
                failures.append(f"{tactic.name}: {type(exc).__name__}: {str(exc)[:160]}")
    assert not failures, failures
