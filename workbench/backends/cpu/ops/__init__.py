"""Numpy kernels, one module per family of ops; importing this package registers them all.
`fused_*` modules run the workbench-domain ops that graph passes create."""
from workbench.backends.cpu.ops import (activation, elementwise, generators, indexing, nn, normalization,  # noqa: F401
                                        pooling, quantize, reduce, shape)
from workbench.backends.cpu.ops import fused_conv, fused_gemm, fused_pointwise, fused_transformer, views  # noqa: F401
from workbench.backends.cpu.ops import layout, precision  # noqa: F401  (workbench::Reformat, RoundTF32)
