"""CPU kernel of workbench::Reformat, the layer the builder inserts where data changes layout
(NCHW <-> NHWC): a transpose by `perm`, made contiguous as a GPU reformat kernel's output is. With
y_scale and y_zero_point inputs (the engine input's QuantizeLinear folded in, builder/layout.py) it
quantizes the moved data exactly as QuantizeLinear does."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import NodeInfo, kernel, lookup


@kernel("Reformat", domain="workbench")
def reformat(inputs, attrs, node):
    moved = np.ascontiguousarray(np.transpose(inputs[0], attrs["perm"]))
    if len(inputs) > 2 and inputs[1] is not None:
        return lookup("", "QuantizeLinear")([moved, inputs[1], inputs[2]], {}, NodeInfo(19))
    return moved
