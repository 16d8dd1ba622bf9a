"""Numpy kernels, one module per family of ops; importing this package registers them all."""
from workbench.backends.cpu.ops import (activation, elementwise, generators, indexing, nn, normalization,  # noqa: F401
                                        pooling, quantize, reduce, shape)
