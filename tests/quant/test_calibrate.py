"""Calibrators against independent references: np.percentile, max |x|, a literal (slow, loop-by-loop)
implementation of TensorRT's KL procedure, and a histogram and divergences worked out by hand."""
import logging
import math

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.quant.calibrate import (EntropyCalibrator, MinMaxCalibrator, PercentileCalibrator, TensorStats,
                                       amax_to_scale, calibrate, kl_divergences, make_calibrator)
from workbench.quant.errors import CalibrationError



def naive_kl(b, L):
    """TensorRT's slide, one candidate at a time, one bin at a time."""
    b = np.asarray(b, np.float64)
    out = []
    for i in range(L, b.size + 1):
        p = b[:i].copy()
        p[-1] += b[i:].sum()
        q = np.zeros(i)
        for j in range(L):
            s, e = math.ceil(j * i / L), math.ceil((j + 1) * i / L)
            nz = p[s:e] > 0
            if nz.any():
                q[s:e][nz] = b[s:e].sum() / nz.sum()
        P, Q = p / p.sum(), q / q.sum() if q.sum() else q
        kl = 0.0
        for pk, qk in zip(P, Q):
            if pk > 0:
                kl += math.inf if qk == 0 else pk * math.log(pk / qk)
        out.append(kl)
    return np.array(out)


def gaussian_stats(n_batches=8, size=20000, nbins=2048):
    rng = np.random.default_rng(7)
    stats, xs = TensorStats("g", nbins), []
    for k in range(n_batches):
        x = rng.standard_normal(size).astype(np.float32) * (0.5 + 0.1 * k)   # growing range: merges happen
        stats.update(x)
        xs.append(x)
    return stats, np.abs(np.concatenate(xs)).astype(np.float64)


def test_kl_by_hand():
    # hist [2, 1, 0, 1], 2 levels. i=2: P=[.5,.5], Q=[2,1]/3; i=3: P[2]=.25 (outliers) but its group
    # of b is empty -> inf; i=4: P=[.5,.25,0,.25], Q=[1.5,1.5,0,1]/4.
    i, kl = kl_divergences([2, 1, 0, 1], num_quantized_bins=2)
    assert i.tolist() == [2, 3, 4]
    want = [0.5 * math.log(1.125), math.inf, 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3)]
    np.testing.assert_allclose(kl, want, rtol=1e-12)


@pytest.mark.parametrize("n,L", [(16, 4), (37, 5), (160, 128)])
def test_kl_matches_literal_loop(n, L):
    rng = np.random.default_rng(n)
    for _ in range(3):
        b = rng.integers(0, 50, n) * (rng.random(n) < 0.7)          # some empty bins
        np.testing.assert_allclose(kl_divergences(b, L)[1], naive_kl(b, L), rtol=1e-9, atol=1e-12)


def test_histogram_growth_is_exact_merge():
    s = TensorStats("t", nbins=8)
    s.update(np.array([0.0, 0.1, 0.3, -0.6, 1.0]))     # R = 1, bin width 1/8
    assert s.range == 1.0 and s.hist.tolist() == [2, 0, 1, 0, 1, 0, 0, 1]
    s.update(np.array([-3.0, 2.5]))                       # R grows x4 to 4: 4 old bins merge into one
    assert s.range == 4.0 and s.hist.tolist() == [3, 2, 0, 0, 0, 1, 1, 0]   # [0,.5) [.5,1) ... 2.5 3.0
    assert s.amax == 3.0 and s.count == 7


def test_minmax_percentile_entropy_on_gaussian():
    stats, a = gaussian_stats()
    assert MinMaxCalibrator().amax(stats) == pytest.approx(a.max())
    for p in (99.0, 99.9, 99.99):
        assert abs(PercentileCalibrator(p).amax(stats) - np.percentile(a, p)) <= stats.bin_width
    e = EntropyCalibrator().amax(stats)
    assert np.percentile(a, 99) < e <= a.max()
    assert MinMaxCalibrator().scale(stats) == amax_to_scale(a.max()) == pytest.approx(a.max() / 127, rel=1e-6)


def test_entropy_clips_a_lone_outlier():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(100000)
    s = TensorStats("x")
    s.update(np.concatenate([x, [50.0]]))
    assert np.percentile(np.abs(x), 99) < EntropyCalibrator().amax(s) <= np.abs(x).max() + s.bin_width  # not 50
    assert PercentileCalibrator(99.99).amax(s) < np.abs(x).max()


def test_degenerate_tensors(caplog):
    zero = TensorStats("z")
    zero.update(np.zeros((4, 4)))
    for c in (MinMaxCalibrator(), PercentileCalibrator(), EntropyCalibrator()):
        assert c.amax(zero) == 0.0 and c.scale(zero) == 1.0
    few = TensorStats("few")
    few.update(np.array([0.1, -0.2, 0.7]))
    assert EntropyCalibrator().amax(few) == pytest.approx(0.7)
    assert 0 < PercentileCalibrator().amax(few) <= 0.7 + 1e-7
    with caplog.at_level(logging.WARNING, logger="workbench.quant.stats"):
        bad = TensorStats("bad")
        bad.update(np.array([np.nan, np.inf, -np.inf, 2.0, -1.0], np.float32))
    assert "bad" in caplog.text and "NaN/Inf" in caplog.text
    assert bad.amax == 2.0 and bad.count == 2 and bad.nonfinite == 3
    empty = TensorStats("e")
    empty.update(np.array([np.nan]))
    assert MinMaxCalibrator().scale(empty) == 1.0
    assert amax_to_scale(1e-45) == 1.0 and np.isfinite(amax_to_scale(1e300))     # float32 under/overflow


def run_fn(feed):
    x = feed["x"]
    return {"double": 2 * x, "relu": np.maximum(x, 0), "other": x}


def test_calibrate_loop_and_table():
    rng = np.random.default_rng(9)
    feeds = [{"x": rng.standard_normal((b, 3)).astype(np.float32)} for b in (4, 4, 2)]
    seen = []
    table = calibrate(run_fn, ["double", "relu"], (f for f in feeds), MinMaxCalibrator(),
                      progress=lambda i, n: seen.append((i, n)), model_hash="abc")
    assert seen == [(1, None), (2, None), (3, None)]                  # a generator has no length
    amax = max(float(np.abs(f["x"]).max()) for f in feeds) * 2
    assert table.amax["double"] == pytest.approx(amax)
    assert table.scales["double"] == amax_to_scale(amax)
    assert set(table.scales) == {"double", "relu"} and table.num_samples == 10 and table.num_batches == 3
    assert table.model_hash == "abc" and table.calibrator == {"name": "minmax", "params": {}}
    seen.clear()
    calibrate(run_fn, "relu", feeds, make_calibrator("percentile", percentile=99.0),
              progress=lambda i, n: seen.append(n))
    assert seen == [3, 3, 3]


def test_calibrate_errors():
    feed = {"x": np.ones((1, 3), np.float32)}
    cases = [([], "empty"), (iter([]), "empty"), ([feed, [1, 2]], "sample 1 is a list"), (feed, "single feed"),
             ([feed, {}], "sample 1 is an empty dict"), (42, "iterable"),
             ([feed, {"y": feed["x"]}], "missing ['x']")]
    for data, msg in cases:
        with pytest.raises(CalibrationError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            calibrate(run_fn, ["relu"], data, MinMaxCalibrator())
    with pytest.raises(CalibrationError, match=r"no value for tensor\(s\) \['nope'\]"):
        calibrate(run_fn, ["relu", "nope"], [feed], MinMaxCalibrator())
    with pytest.raises(CalibrationError, match="no tensors"):
        calibrate(run_fn, [], [feed], MinMaxCalibrator())
    with pytest.raises(CalibrationError, match="unknown calibrator"):
        make_calibrator("kl")

    def strict(f):
        raise InputError("input 'x': expected shape [1, 3], got [2, 3]")
    with pytest.raises(InputError, match="expected shape"):
        calibrate(strict, ["relu"], [feed], MinMaxCalibrator())
