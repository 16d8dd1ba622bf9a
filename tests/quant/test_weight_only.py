"""Weight-only INT8: error bound |w - dq| <= scale / 2 per channel, layouts, size ratio, report."""
import numpy as np
import pytest

from workbench.quant.weight_only import dequantize_weights, quantize_weights, size_ratio, weight_only_report


@pytest.mark.parametrize("shape,axis", [((16, 8, 3, 3), 0), ((32, 64), 0), ((64, 32), 1), ((10, 7), None)])
def test_error_bound(shape, axis):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 10, shape[0])[(...,) + (None,) * (len(shape) - 1)]
         ).astype(np.float32)
    q, s = quantize_weights(w, axis)
    assert q.dtype == np.int8 and q.shape == w.shape and s.dtype == np.float32
    assert s.shape == (() if axis is None else (shape[axis],))
    dq = dequantize_weights(q, s, axis)
    half = (s if axis is None else np.expand_dims(s, [d for d in range(w.ndim) if d != axis])) / 2
    assert (np.abs(w.astype(np.float64) - dq) <= half * (1 + 1e-6)).all()
    assert np.abs(q).max() == 127 and q.min() >= -127


def test_by_hand_and_zero_channel():
    w = np.array([[0.0, 0.0], [1.27, -0.635]], np.float32)
    q, s = quantize_weights(w)
    assert s.tolist() == [1.0, pytest.approx(0.01)] and q.tolist() == [[0, 0], [127, -64]]   # 63.5 -> 64
    np.testing.assert_allclose(dequantize_weights(q, s), [[0, 0], [1.27, -0.64]], rtol=1e-6)


def test_size_ratio_and_report():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    q, s = quantize_weights(w)
    assert size_ratio(w, q, s) == pytest.approx(4 / (1 + 4 * 64 / w.size))
    df = weight_only_report({"fc": w, "mm": w.T}, axis={"mm": 1}).set_index("name")
    assert df.loc["fc", "bytes.fp32"] == w.nbytes and df.loc["fc", "bytes.int8"] == w.size + 64 * 4
    assert (df["err.max_over_half_scale"] <= 1 + 1e-6).all() and (df["err.rel_l2"] < 0.01).all()
    assert df.loc["mm", "size_ratio"] == df.loc["fc", "size_ratio"]
