"""Importing this package registers every CUDA tactic. One module per family; optional sources
(cudnn, nvmath) register nothing when their package is missing."""
import importlib
import logging

log = logging.getLogger(__name__)

_MODULES = ("fallback", "movement", "joins", "pointwise", "pool", "quantize", "norm", "attention", "reduce",
            "gemm", "gemm_tc", "conv", "conv_igemm", "conv_direct", "cudnn_conv", "cudnn_qconv", "qconv_igemm",
            "qconv_stem", "qconv_rows", "reformat", "nvmath_gemm", "sparse_gemm")

for _name in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_name}":     # a module of ours that is not written yet is skipped;
            raise                                  # a real missing dependency inside one is an error
        log.debug("tactic module %s not present", _name)
