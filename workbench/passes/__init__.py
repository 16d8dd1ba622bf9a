"""Graph passes: one module per pass, each an onnx_ir InPlacePass that records its rewrites."""
from workbench.passes.pipeline import optimize, pass_names
from workbench.passes.report import FusionReport

__all__ = ["optimize", "pass_names", "FusionReport"]
