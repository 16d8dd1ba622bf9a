"""ONNX in and out, on onnx_ir. Imports nothing else of the workbench."""
from workbench.ir import fused  # noqa: F401  (registers the workbench-domain schemas)
from workbench.ir.graph import WORKBENCH_DOMAIN, Graph, TensorSpec, node_attributes
from workbench.ir.load import MAX_OPSET, MIN_OPSET, load

__all__ = ["Graph", "TensorSpec", "load", "node_attributes", "WORKBENCH_DOMAIN", "MIN_OPSET", "MAX_OPSET"]
