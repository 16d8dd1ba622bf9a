"""`load`: ONNX file, bytes or ModelProto in; a checked, shape-inferred `Graph` out.

Every way a model can be unusable is reported here with the culprit named, before any
backend sees it: not ONNX or truncated, missing external-data files, an opset outside our
range, ops ONNX itself does not define, dangling edges, failed shape inference.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
import onnx.external_data_helper as exdata
import onnx_ir as ir
from google.protobuf.message import DecodeError

from workbench.errors import (ExternalDataError, ModelLoadError, ShapeInferenceError,
                              UnsupportedOpError, UnsupportedOpsetError)
from workbench.ir.graph import Graph

__all__ = ["load", "MIN_OPSET", "MAX_OPSET", "check_opsets"]
log = logging.getLogger(__name__)

MIN_OPSET = 7                                 # older models predate broadcasting as we implement it
MAX_OPSET = onnx.defs.onnx_opset_version()    # the newest the installed onnx package knows
_STANDARD_DOMAINS = ("", "ai.onnx")


def load(model: str | os.PathLike | bytes | onnx.ModelProto | Graph, *, infer_shapes: bool = True) -> Graph:
    """Load an ONNX model and infer its shapes and dtypes.

    Args:
        model: a path to a .onnx file, the file's bytes, an `onnx.ModelProto`, or a `Graph` (copied).
        infer_shapes: run ONNX shape inference (strict: a failure names the node).

    Example:
        >>> g = wb.load("digits_cnn.onnx")
        >>> g.op_counts()
        {'Conv': 2, 'Relu': 3, ...}
    """
    if isinstance(model, Graph):
        return model.copy()
    proto, source, base_dir = _read_proto(model)
    _check_looks_like_onnx(proto, source)
    _load_external_data(proto, source, base_dir)
    check_opsets(proto, source)
    _check_known_ops(proto, source)
    _check_edges(proto, source)
    if infer_shapes:
        proto = _infer_shapes(proto, source)
    return Graph(ir.from_proto(proto), source)


def _read_proto(model) -> tuple[onnx.ModelProto, str, Path | None]:
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>", None
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _parse(bytes(model), "<bytes>"), "<bytes>", None
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    return _parse(path.read_bytes(), str(path)), str(path), path.parent


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{source}: not a valid ONNX model; protobuf could not parse its {len(data)} bytes "
            f"(is the file truncated, or not ONNX at all?): {exc}") from None
    return proto


def _check_looks_like_onnx(proto: onnx.ModelProto, source: str) -> None:
    # Arbitrary bytes sometimes parse as a protobuf message full of unknown fields.
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        missing = [what for what, ok in (("ir_version", proto.ir_version > 0),
                                         ("graph", proto.HasField("graph")),
                                         ("opset_import", bool(proto.opset_import))) if not ok]
        raise ModelLoadError(f"{source}: not an ONNX model (missing {', '.join(missing)}); "
                             "the file may be truncated or of another format")


def _load_external_data(proto: onnx.ModelProto, source: str, base_dir: Path | None) -> None:
    external = [t for t in exdata._get_all_tensors(proto) if exdata.uses_external_data(t)]
    if not external:
        return
    if base_dir is None:
        raise ExternalDataError(
            f"{source}: {len(external)} tensors keep their data in external files "
            f"(first: {external[0].name!r}); load the model from its path so those files can be found")
    missing = []
    for tensor in external:
        info = exdata.ExternalDataInfo(tensor)
        if not (base_dir / info.location).is_file():
            missing.append(f"{tensor.name!r} -> {base_dir / info.location}")
    if missing:
        raise ExternalDataError(f"{source}: external data files not found for {len(missing)} tensors: "
                                + "; ".join(missing))
    try:
        exdata.load_external_data_for_model(proto, str(base_dir))
    except Exception as exc:   # onnx raises several types for short or unreadable files
        raise ExternalDataError(f"{source}: could not read external data: {exc}") from None


def check_opsets(proto: onnx.ModelProto, source: str) -> None:
    for opset in proto.opset_import:
        if opset.domain in _STANDARD_DOMAINS and not MIN_OPSET <= opset.version <= MAX_OPSET:
            raise UnsupportedOpsetError(
                f"{source}: opset {opset.version} of the default ONNX domain is outside the supported "
                f"range {MIN_OPSET}..{MAX_OPSET}; convert the model with onnx.version_converter")


def _check_known_ops(proto: onnx.ModelProto, source: str) -> None:
    unknown = [(n.name or f"#{i}", n.op_type) for i, n in enumerate(proto.graph.node)
               if n.domain in _STANDARD_DOMAINS and not onnx.defs.has(n.op_type)]
    if unknown:
        listing = ", ".join(f"{op} (node {name!r})" for name, op in unknown)
        raise UnsupportedOpError(
            f"{source}: {len(unknown)} nodes use ops that ONNX does not define: {listing}. "
            f"Put custom ops in their own domain and register a plugin for them.", unknown)


def _check_edges(proto: onnx.ModelProto, source: str) -> None:
    """Every node input must be defined before use; truncated files often fail here."""
    graph = proto.graph
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    dangling = []
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name not in defined:
                dangling.append(f"node {node.name or '#' + str(i)!r} ({node.op_type}) reads {name!r}")
        defined.update(node.output)
    for out in graph.output:
        if out.name not in defined:
            dangling.append(f"graph output {out.name!r} is produced by no node")
    if dangling:
        shown = "; ".join(dangling[:10]) + (f"; and {len(dangling) - 10} more" if len(dangling) > 10 else "")
        raise ModelLoadError(f"{source}: the graph has undefined values (truncated file, or nodes out of "
                             f"topological order): {shown}")


def _infer_shapes(proto: onnx.ModelProto, source: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ShapeInferenceError(f"{source}: shape inference failed: {exc}") from None
    except ValueError as exc:   # models over 2 GB cannot be inferred in memory; keep declared shapes
        log.warning("%s: shape inference skipped: %s", source, exc)
        return proto


