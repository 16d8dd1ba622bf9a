"""The exceptions users see. Each names the thing that is wrong (file, node, input,
expected vs got) so nobody has to read a traceback from deep inside protobuf or numpy."""
from __future__ import annotations

__all__ = [
    "WorkbenchError", "ModelLoadError", "ExternalDataError", "UnsupportedOpsetError",
    "UnsupportedOpError", "ShapeInferenceError", "BuildError", "InputError",
    "PlanFormatError", "ExecutionError", "UnknownPassError", "ViewError",
]


class WorkbenchError(Exception):
    """Base of every error raised on purpose by the workbench."""


class ModelLoadError(WorkbenchError):
    """The model file or bytes are not a usable ONNX model (not ONNX, truncated, dangling edges)."""


class ExternalDataError(ModelLoadError):
    """Tensors stored outside the .onnx file could not be found or read."""


class UnsupportedOpsetError(ModelLoadError):
    """The model's opset for a domain is outside the range the workbench supports."""


class ShapeInferenceError(WorkbenchError):
    """ONNX shape inference failed; the message names the node."""


class UnsupportedOpError(WorkbenchError):
    """One or more nodes use ops the chosen backend cannot run.

    Attributes:
        nodes: list of (node name, domain::op_type) pairs, every unsupported node at once.
    """

    def __init__(self, message: str, nodes: list[tuple[str, str]]):
        super().__init__(message)
        self.nodes = nodes


class BuildError(WorkbenchError):
    """The builder cannot produce an engine for this graph and configuration."""


class InputError(WorkbenchError, ValueError):
    """A feed given to ExecutionContext.run is missing, extra, or of the wrong shape or dtype."""


class PlanFormatError(WorkbenchError):
    """A .wbplan file is corrupt, truncated, of another format version, or for another device."""


class ExecutionError(WorkbenchError):
    """A layer failed while running; the message names the layer and its source nodes."""


class UnknownPassError(WorkbenchError, ValueError):
    """`optimize` was given a pass name (or level) that does not exist; the message lists the valid ones."""


class ViewError(WorkbenchError):
    """A graph view cannot be made: viewer missing, port taken, bad focus or layout engine."""
