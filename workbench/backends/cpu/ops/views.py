"""CPU kernels of the view ops: SplitView returns numpy views of its input (no copy); ConcatView
concatenates (the CPU backend has no memory planner, so it copies; the values are Concat's)."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import kernel


@kernel("SplitView", domain="workbench")
def split_view(inputs, attrs, node):
    x = inputs[0]
    return np.split(x, np.cumsum(attrs["split"])[:-1], axis=attrs.get("axis", 0))


@kernel("ConcatView", domain="workbench")
def concat_view(inputs, attrs, node):
    return np.concatenate([x for x in inputs if x is not None], axis=attrs.get("axis", 0))
