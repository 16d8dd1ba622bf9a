"""ONNX in and out, on onnx_ir. Imports nothing else of the workbench."""
from workbench.ir import fused  # noqa: F401  (registers the workbench-domain schemas)
from workbench.ir.graph import SOURCE_NODES_KEY, WORKBENCH_DOMAIN, Graph, TensorSpec, node_attributes, source_nodes_of
from workbench.ir.load import MAX_OPSET, MIN_OPSET, load

__all__ = ["Graph", "TensorSpec", "load", "node_attributes", "source_nodes_of", "SOURCE_NODES_KEY", "WORKBENCH_DOMAIN", "MIN_OPSET", "MAX_OPSET"]
