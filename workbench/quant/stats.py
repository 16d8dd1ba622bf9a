"""TensorStats: what calibration remembers of one activation tensor across batches.

Why a histogram: the percentile and entropy calibrators need the distribution of |x| over ~1000
samples, and keeping the samples themselves is out of the question (ResNet-50's first activation alone
is 3 MB per image). A fixed-size histogram plus the running max is enough for all three calibrators.

The histogram: N = 2048 bins of |x| over [0, R]; bin k holds |x| in [k*R/N, (k+1)*R/N),
max |x| lands in the last bin. One pass over the data: R starts as the first batch's max |x|; when a later
max exceeds R, R grows by the smallest power of two 2**m that covers it and every 2**m adjacent bins
merge into one. The merge is exact (no count is re-spread by guesswork, unlike re-binning at arbitrary
edges) and the bin count stays N; the price is resolution: R < 2 * max|x|, so [0, max|x|] always spans
more than N/2 bins. NaN and +-Inf are not counted (a warning is logged once per tensor).
"""
from __future__ import annotations

import logging

import numpy as np

__all__ = ["TensorStats"]

logger = logging.getLogger(__name__)


class TensorStats:
    """Running max |x| and a histogram of |x| for one tensor, accumulated batch by batch."""

    def __init__(self, name: str = "", nbins: int = 2048):
        if nbins < 1:
            raise ValueError(f"nbins must be >= 1, got {nbins}")
        self.name, self.nbins = name, nbins
        self.hist = np.zeros(nbins, np.int64)
        self.range = 0.0      # the histogram covers [0, range]
        self.amax = 0.0       # running max |x| over finite values
        self.count = 0        # finite values seen
        self.nonfinite = 0    # NaN / Inf values skipped

    @property
    def bin_width(self) -> float:
        return self.range / self.nbins

    def update(self, x) -> None:
        a = np.asarray(x)
        if a.dtype.kind != "f" or a.dtype.itemsize < 4:
            a = a.astype(np.float32)
        a = np.abs(a).ravel()
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - np.count_nonzero(finite))
            if not self.nonfinite:
                logger.warning("calibration: tensor %r has %d NaN/Inf values; they are ignored", self.name, bad)
            self.nonfinite += bad
            a = a[finite]
        if a.size == 0:
            return
        m = float(a.max())
        self.amax = max(self.amax, m)
        if m > self.range:
            self._grow(m)
        if self.range == 0.0:          # only zeros so far: they belong to bin 0 whatever R becomes
            self.hist[0] += a.size
        else:
            idx = (a * (self.nbins / self.range)).astype(np.intp)
            np.minimum(idx, self.nbins - 1, out=idx)
            self.hist += np.bincount(idx, minlength=self.nbins)
        self.count += int(a.size)

    def _grow(self, m: float) -> None:
        if self.range == 0.0:
            self.range = m
            return
        f = 1
        while self.range * f < m:
            f *= 2
        h = np.concatenate([self.hist, np.zeros(-self.nbins % f, np.int64)]).reshape(-1, f).sum(axis=1)
        self.hist = np.zeros(self.nbins, np.int64)
        self.hist[:h.size] = h
        self.range *= f
