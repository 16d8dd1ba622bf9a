"""The .wbplan format: the engine as data, never code.

A plan is a zip archive holding
  manifest.json     format name and version, backend, device, precision, profile, I/O specs,
                    layers (op, attrs, tactic, precision, source nodes, shapes), weight index;
  weights/NNNNN.npy one array each, written with allow_pickle=False;
  checksums.json    sha256 of every other member.
Reading refuses anything that is not exactly that: another format version, a member whose hash
differs, a missing member, a truncated archive. No pickle is ever involved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from workbench import __version__
from workbench.backends.base import Layer
from workbench.builder.config import Profile
from workbench.builder.network import IOSpec, Network
from workbench.errors import PlanFormatError

__all__ = ["write", "dumps", "read", "FORMAT", "FORMAT_VERSION"]

FORMAT = "wbplan"
FORMAT_VERSION = 1
_MANIFEST, _CHECKSUMS = "manifest.json", "checksums.json"
_TENSOR_TAG = "__tensor__"


# -- writing ------------------------------------------------------------------------------
def dumps(network: Network) -> bytes:
    members = _members(network)
    buffer = io.BytesIO()
    # JSON compresses ~5x and on small models outweighs the weights; arrays stay stored, so large
    # plans load at disk speed
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data, compress_type=_compression(name))
        checksums = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
        archive.writestr(_CHECKSUMS, json.dumps(checksums, indent=1), compress_type=_compression(_CHECKSUMS))
    return buffer.getvalue()


def write(network: Network, path: str | os.PathLike) -> None:
    path = Path(path)
    data = dumps(network)        # serialize fully before touching the file system
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compression(member: str) -> int:
    return zipfile.ZIP_DEFLATED if member.endswith(".json") else zipfile.ZIP_STORED


def _members(network: Network) -> dict[str, bytes]:
    arrays: dict[str, np.ndarray] = dict(network.weights)
    layers = []
    for layer in network.layers:
        record = dataclasses.asdict(layer)
        record["attrs"] = {k: _encode_attr(v, f"{layer.name}/{k}", arrays) for k, v in layer.attrs.items()}
        layers.append(record)
    files, index = {}, {}
    for number, (name, array) in enumerate(arrays.items()):
        member = f"weights/{number:05d}.npy"
        files[member] = _npy_bytes(array)
        index[name] = {"file": member, "dtype": array.dtype.name, "shape": list(array.shape)}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "workbench_version": __version__,
        "backend": network.backend, "device": _device(network), "precision": network.precision,
        "profile": dataclasses.asdict(network.profile) if network.profile else None,
        "inputs": [_io(s) for s in network.inputs], "outputs": [_io(s) for s in network.outputs],
        "layers": layers, "weights": index, "meta": network.meta,
    }
    return {_MANIFEST: json.dumps(manifest, indent=1, default=_json_default).encode(), **files}


def _encode_attr(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        arrays["__attr__/" + key] = value
        return {_TENSOR_TAG: "__attr__/" + key}
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return [_encode_attr(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, (str, int, float, bool, type(None))) or isinstance(value, list):
        return value
    raise PlanFormatError(f"attribute {key!r} of type {type(value).__name__} cannot be stored in a plan")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    if array.dtype.kind == "V" or array.dtype.name.startswith(("bfloat", "float8", "float4", "int4", "uint4")):
        array = array.view(np.dtype(f"u{array.dtype.itemsize}"))   # ml_dtypes: raw bits; dtype is in the index
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _io(spec: IOSpec) -> dict:
    return {"name": spec.name, "dtype": spec.dtype.name, "shape": None if spec.shape is None else list(spec.shape),
            "batch_axis": spec.batch_axis}


def _device(network: Network) -> dict:
    """Where the engine was tuned: a CUDA engine's tactics and tile choices hold for that GPU only."""
    return {"backend": network.backend, "name": network.meta.get("device", network.backend),
            "backend_version": network.meta.get("backend_version", "")}


def check_device(manifest_device: dict, label: str) -> None:
    """Refuse a CUDA plan on another GPU (or none): its tactics were chosen and checked there."""
    if manifest_device.get("backend") != "cuda":
        return
    from workbench.backends.cuda.device import cuda_available
    if not cuda_available():
        raise PlanFormatError(f"{label}: this plan was built for the CUDA backend on {manifest_device.get('name')}, "
                              "and this machine has no usable GPU (or no CuPy); rebuild it with backend='cpu'")
    from workbench.backends import get_backend
    here = get_backend("cuda").device
    if here != manifest_device.get("name"):
        raise PlanFormatError(f"{label}: this plan was built and tuned on {manifest_device.get('name')}, but this "
                              f"machine's GPU is {here}; rebuild the engine from the ONNX model on this GPU")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- reading ------------------------------------------------------------------------------
def read(source: str | os.PathLike | bytes) -> Network:
    label = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)):
        if not Path(source).is_file():
            raise PlanFormatError(f"{label}: no such plan file")
        source = Path(source).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(source)) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as exc:
        raise PlanFormatError(f"{label}: not a readable .wbplan (corrupt or truncated archive: {exc})") from None
    except zipfile.LargeZipFile as exc:
        raise PlanFormatError(f"{label}: {exc}") from None
    manifest = _checked_manifest(members, label)
    check_device(manifest.get("device") or {}, label)
    return _network(manifest, members, label)


def _checked_manifest(members: dict[str, bytes], label: str) -> dict:
    for required in (_MANIFEST, _CHECKSUMS):
        if required not in members:
            raise PlanFormatError(f"{label}: not a .wbplan: member {required!r} is missing")
    try:
        manifest = json.loads(members[_MANIFEST])
        checksums = json.loads(members[_CHECKSUMS])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanFormatError(f"{label}: manifest or checksums are not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PlanFormatError(f"{label}: not a .wbplan (format is {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PlanFormatError(f"{label}: plan format version {version} (written by workbench "
                              f"{manifest.get('workbench_version')}), but this workbench {__version__} reads "
                              f"version {FORMAT_VERSION}; rebuild the engine from the ONNX model")
    stored = set(members) - {_CHECKSUMS}
    if set(checksums) != stored:
        raise PlanFormatError(f"{label}: members {sorted(stored ^ set(checksums))} do not match the checksum list")
    for name, digest in checksums.items():
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise PlanFormatError(f"{label}: checksum mismatch in {name!r}: the plan is corrupt")
    return manifest


def _network(manifest: dict, members: dict[str, bytes], label: str) -> Network:
    try:
        arrays = {name: _load_array(members[entry["file"]], entry["dtype"])
                  for name, entry in manifest["weights"].items()}
        layers = []
        for record in manifest["layers"]:
            record = dict(record)
            record["attrs"] = {k: _decode_attr(v, arrays) for k, v in record["attrs"].items()}
            record["output_shapes"] = [None if s is None else tuple(s) for s in record["output_shapes"]]
            layers.append(Layer(**record))
        weights = {k: v for k, v in arrays.items() if not k.startswith("__attr__/")}
        profile = Profile(**manifest["profile"]) if manifest["profile"] else None
        return Network(layers, weights, [_spec(s) for s in manifest["inputs"]],
                       [_spec(s) for s in manifest["outputs"]], manifest["backend"], manifest["precision"],
                       profile, manifest.get("meta", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFormatError(f"{label}: manifest is malformed ({type(exc).__name__}: {exc})") from None


def _load_array(data: bytes, dtype_name: str) -> np.ndarray:
    array = np.load(io.BytesIO(data), allow_pickle=False)
    dtype = _dtype(dtype_name)
    return array.view(dtype) if array.dtype != dtype else array


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, name))


def _decode_attr(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict) and _TENSOR_TAG in value:
        return arrays[value[_TENSOR_TAG]]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_decode_attr(v, arrays) for v in value]
    return value


def _spec(record: dict) -> IOSpec:
    shape = None if record["shape"] is None else tuple(record["shape"])
    return IOSpec(record["name"], _dtype(record["dtype"]), shape, record["batch_axis"])
