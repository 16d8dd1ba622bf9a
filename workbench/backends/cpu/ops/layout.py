"""CPU kernel of workbench::Reformat, the layer the builder inserts where data changes layout
(NCHW <-> NHWC): a transpose by `perm`, made contiguous as a GPU reformat kernel's output is."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import kernel


@kernel("Reformat", domain="workbench")
def reformat(inputs, attrs, node):
    return np.ascontiguousarray(np.transpose(inputs[0], attrs["perm"]))
