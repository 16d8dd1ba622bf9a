"""Activation calibration for symmetric per-tensor INT8 (TensorRT style): statistics, calibrators, loop.

Why: INT8 maps [-amax, amax] onto [-127, 127] with scale = amax / 127. Weights know their amax; an
activation's range is only seen by running representative data. Too large an amax wastes levels on
values that never occur; too small clips outliers. The calibrators choose amax from statistics that
`TensorStats` accumulates over the batches:

    minmax      amax = max |x|                                   (no clipping; outliers cost resolution)
    percentile  amax = the p-th percentile of |x| (p = 99.99)     (clips the rarest values)
    entropy     amax = the threshold whose 128-level quantized histogram loses the least information:
                argmin_i KL(P_i || Q_i), see `kl_divergences`; TensorRT's (Migacz, GTC 2017) method

Histogram: see `workbench.quant.stats` (2048 bins of |x|, range grown by exact power-of-two merges).

Degenerate tensors: a tensor that is zero on every sample (or has no finite value) gets amax 0 and
scale 1.0 (zeros quantize exactly either way; 1.0 does not blow a later tiny value up to +-127).
With fewer finite values than quantization levels (128) the entropy calibrator falls back to max |x|.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from workbench.quant.errors import CalibrationError
from workbench.quant.stats import TensorStats
from workbench.quant.table import CalibrationTable

__all__ = ["TensorStats", "Calibrator", "MinMaxCalibrator", "PercentileCalibrator", "EntropyCalibrator",
           "kl_divergences", "amax_to_scale", "make_calibrator", "calibrate", "feed_iterator"]

logger = logging.getLogger(__name__)
QMAX = 127


def amax_to_scale(amax: float) -> float:
    """amax / 127 rounded to float32 (the value kernels use); 1.0 when that is 0 (amax == 0 or denormal)."""
    amax = min(float(amax), float(np.finfo(np.float32).max))
    s = np.float32(amax) / np.float32(QMAX) if amax > 0 else np.float32(0)
    return float(s) if s > 0 else 1.0


class Calibrator:
    """Chooses amax from a TensorStats; subclasses implement `amax`."""
    name = "base"

    def amax(self, stats: TensorStats) -> float:
        raise NotImplementedError

    def scale(self, stats: TensorStats) -> float:
        return amax_to_scale(self.amax(stats))

    def describe(self) -> dict:
        return {"name": self.name, "params": asdict(self)}


@dataclass(frozen=True)
class MinMaxCalibrator(Calibrator):
    """amax = max |x| over every sample."""
    name = "minmax"

    def amax(self, stats: TensorStats) -> float:
        return stats.amax


@dataclass(frozen=True)
class PercentileCalibrator(Calibrator):
    """amax = the `percentile`-th percentile of |x|, linearly interpolated inside its histogram bin."""
    percentile: float = 99.99
    name = "percentile"

    def __post_init__(self):
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")

    def amax(self, stats: TensorStats) -> float:
        if stats.count == 0 or stats.amax == 0:
            return 0.0
        cdf = np.cumsum(stats.hist)
        target = self.percentile / 100.0 * cdf[-1]
        k = min(int(np.searchsorted(cdf, target, side="left")), stats.nbins - 1)
        below = cdf[k - 1] if k else 0
        frac = (target - below) / stats.hist[k] if stats.hist[k] else 1.0
        return float(min((k + frac) * stats.bin_width, stats.amax))


def kl_divergences(hist, num_quantized_bins: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """KL(P_i || Q_i) for every candidate threshold bin i in [L, N] (L = num_quantized_bins).

    With b = hist (N bins), T = sum(b) and outliers O_i = sum(b[i:]):
        P_i = b[:i] with O_i added to its last bin, divided by T;
        Q_i: bins [0, i) split into L groups, group j = [ceil(j*i/L), ceil((j+1)*i/L)); the group sum of
             b[:i] (outliers NOT included: clipping them must cost divergence) is spread evenly over the
             group's bins where P_i > 0 (zero elsewhere), then Q_i is divided by its sum, T - O_i;
        KL   = sum_k P[k] * log(P[k] / Q[k]), infinite where P[k] > 0 and Q[k] = 0.
    Since Q is constant (q_j) over each group's nonzero bins, KL = sum_k P log P - sum_j M_j log q_j
    with M_j the P mass of group j; cumulative sums of b, [b > 0] and b log b make every candidate
    O(L) instead of O(N), all candidates at once.

    Returns:
        (i, kl): candidate thresholds (bins kept) and their divergences, float64 arrays.
    """
    b = np.asarray(hist, np.float64)
    n, L = b.size, num_quantized_bins
    if n < L:
        raise ValueError(f"the histogram needs at least {L} bins for {L} quantized levels, got {n}")
    i = np.arange(L, n + 1)
    total = b.sum()
    csum = np.concatenate([[0.0], np.cumsum(b)])
    cnz = np.concatenate([[0], np.cumsum(b > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogx = lambda v: np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)  # noqa: E731
        chlogh = np.concatenate([[0.0], np.cumsum(xlogx(b))])
        edges = -((-np.arange(L + 1)[None, :] * i[:, None]) // L)        # ceil(j*i/L), [candidates, L+1]
        q_sum = np.diff(csum[edges], axis=1)                              # group sums of b[:i]
        nonzero = np.diff(cnz[edges], axis=1).astype(np.float64)
        outliers = total - csum[i]
        last = b[i - 1]
        nonzero[:, -1] += (last == 0) & (outliers > 0)                   # P's last bin holds outliers
        mass = q_sum.copy()
        mass[:, -1] += outliers
        q = q_sum / (nonzero * csum[i][:, None])
        cross = np.where(mass > 0, mass * np.log(np.where(mass > 0, q, 1.0)), 0.0).sum(axis=1)
        p_log_p = chlogh[i - 1] + xlogx(last + outliers)
        kl = (p_log_p - cross) / total - np.log(total)
    kl = np.maximum(kl, 0.0)                                              # rounding noise around 0
    kl[np.any((mass > 0) & (q_sum == 0), axis=1)] = np.inf
    return i, kl


@dataclass(frozen=True)
class EntropyCalibrator(Calibrator):
    """amax = (i* + 0.5) * bin_width with i* = argmin_i KL(P_i || Q_i) (first minimum), capped at max |x|.

    (i + 0.5) * bin_width is the formula of the TensorRT slides; for tensors with fewer than
    `num_quantized_bins` finite values the histogram is too sparse to match and amax = max |x|.
    """
    num_quantized_bins: int = 128
    name = "entropy"

    def amax(self, stats: TensorStats) -> float:
        if stats.count == 0 or stats.amax == 0:
            return 0.0
        if stats.count < self.num_quantized_bins:
            logger.info("calibration: tensor %r has %d values; entropy falls back to max |x|",
                        stats.name, stats.count)
            return stats.amax
        i, kl = kl_divergences(stats.hist, self.num_quantized_bins)
        best = int(i[np.argmin(kl)])
        return float(min((best + 0.5) * stats.bin_width, stats.amax))


CALIBRATORS = {"minmax": MinMaxCalibrator, "percentile": PercentileCalibrator, "entropy": EntropyCalibrator}


def make_calibrator(name: str, **params) -> Calibrator:
    """make_calibrator("percentile", percentile=99.9): the calibrator by its table name."""
    if name not in CALIBRATORS:
        raise CalibrationError(f"unknown calibrator {name!r}; choose one of {sorted(CALIBRATORS)}")
    return CALIBRATORS[name](**params)


def _batch_size(feed: Mapping) -> int:
    first = np.shape(next(iter(feed.values())))
    return int(first[0]) if first else 1


def feed_iterator(data, refusal: str) -> tuple[Iterator, int | None]:
    """An iterator over `data` and its length when it has one (lists do, generators do not);
    CalibrationError(`refusal`, the type) when `data` cannot be iterated."""
    try:
        total = len(data)
    except TypeError:
        total = None
    try:
        return iter(data), total
    except TypeError:
        raise CalibrationError(f"{refusal}, got {type(data).__name__}") from None


def calibrate(run_fn: Callable[[dict], Mapping], tensors: Iterable[str], data: Iterable[Mapping],
              calibrator: Calibrator, *, progress: Callable[[int, int | None], None] | None = None,
              model_hash: str = "", nbins: int = 2048) -> CalibrationTable:
    """Run every feed of `data` through `run_fn`, accumulate stats of `tensors`, choose their scales.

    Args:
        run_fn: feed dict -> dict name -> array holding at least `tensors`, e.g.
            `lambda feed: ctx.run(feed, keep=set(tensors))`; an InputError it raises propagates as is.
        tensors: names of the activations to calibrate.
        data: any iterable (list, generator, DataLoader-like) of feed dicts, input name -> array.
        calibrator: MinMaxCalibrator(), PercentileCalibrator(99.99) or EntropyCalibrator().
        progress: called as progress(done, total_or_None) after each feed.
        model_hash: recorded in the table (see table.model_hash) so a cached table is tied to its model.
    """
    names = list(dict.fromkeys([tensors] if isinstance(tensors, str) else tensors))
    if not names:
        raise CalibrationError("calibrate: no tensors to calibrate were given")
    if isinstance(data, Mapping):
        raise CalibrationError("calibrate: data is a single feed dict; pass an iterable of them, e.g. [feed]")
    feeds, total = feed_iterator(data, "calibrate: data must be an iterable of feed dicts")
    stats = {n: TensorStats(n, nbins) for n in names}
    batches = samples = 0
    inputs = None
    for k, feed in enumerate(feeds):
        if not isinstance(feed, Mapping) or not feed:
            what = "an empty dict" if isinstance(feed, Mapping) else f"a {type(feed).__name__}"
            raise CalibrationError(f"calibration sample {k} is {what}, not a dict of input name -> array")
        if inputs is None:
            inputs = set(feed)
        elif set(feed) != inputs:
            raise CalibrationError(f"calibration sample {k} has inputs {sorted(feed)}, but sample 0 had "
                                   f"{sorted(inputs)} (missing {sorted(inputs - set(feed))})")
        outs = run_fn(dict(feed))
        if not isinstance(outs, Mapping):
            raise CalibrationError(f"calibrate: run_fn must return a dict, got {type(outs).__name__}")
        missing = [n for n in names if n not in outs]
        if missing:
            raise CalibrationError(f"calibration sample {k}: run_fn returned no value for tensor(s) "
                                   f"{missing}; it returned {sorted(outs)[:20]}")
        for n in names:
            stats[n].update(outs[n])
        batches += 1
        samples += _batch_size(feed)
        if progress is not None:
            progress(batches, total)
    if batches == 0:
        raise CalibrationError("calibration data is empty: no feed dict was produced (an exhausted "
                               "generator can only be iterated once)")
    amax = {n: float(calibrator.amax(stats[n])) for n in names}
    zero = [n for n in names if amax[n] == 0.0]
    if zero:
        logger.warning("calibration: tensor(s) %s were zero (or non-finite) on every sample; scale 1.0", zero)
    return CalibrationTable(model_hash=model_hash, calibrator=calibrator.describe(), num_samples=samples,
                            scales={n: amax_to_scale(a) for n, a in amax.items()}, amax=amax,
                            num_batches=batches)
