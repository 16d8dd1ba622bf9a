"""CalibrationTable: the cached result of INT8 calibration, one scale per activation tensor.

Why a file: calibration feeds hundreds of samples through the FP32 model; TensorRT writes the result
to a calibration cache so a rebuild (new batch size, new tactics) skips it. A table only holds for the
model it was computed on, so it carries the sha256 of the serialized ONNX model and `load` refuses a
table of another model instead of silently applying wrong scales. The file is indented JSON (readable,
diffable, no pickle) and is written atomically (temp file in the same folder, then os.replace), so an
interrupted save never leaves a half-written cache behind.

    table.save("resnet50.calib.json")
    table = CalibrationTable.load("resnet50.calib.json", expected_model_hash=model_hash(onnx_bytes))
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from workbench import __version__
from workbench.quant.errors import CalibrationError

__all__ = ["CalibrationTable", "model_hash", "FORMAT"]

FORMAT = "workbench.calibration/1"


def model_hash(model_proto_bytes) -> str:
    """sha256 hex digest of the serialized ONNX model (bytes, or anything with SerializeToString)."""
    if hasattr(model_proto_bytes, "SerializeToString"):
        model_proto_bytes = model_proto_bytes.SerializeToString()
    return hashlib.sha256(bytes(model_proto_bytes)).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CalibrationTable:
    """Per-tensor symmetric INT8 scales (scale = amax / 127) and the run that produced them.

    Attributes:
        model_hash: sha256 of the serialized ONNX model the table belongs to ("" when unknown).
        calibrator: {"name": "entropy" | "minmax" | "percentile", "params": {...}}.
        num_samples: samples seen (sum of the feeds' batch dimensions); num_batches: feeds seen.
        scales, amax: tensor name -> float (scales are float32-representable).
        created: ISO 8601 UTC time; workbench_version: the version that wrote it.
    """
    model_hash: str
    calibrator: dict
    num_samples: int
    scales: dict[str, float]
    amax: dict[str, float]
    num_batches: int = 0
    created: str = field(default_factory=_now)
    workbench_version: str = __version__

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> CalibrationTable:
        """Parse and validate; every problem is a CalibrationError naming `source`."""
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CalibrationError(f"{source}: not a calibration table (invalid JSON: {e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise CalibrationError(f"{source}: not a calibration table of format {FORMAT!r} (got {got!r})")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names[:5] if n not in d]
        if missing:
            raise CalibrationError(f"{source}: calibration table lacks field(s) {missing}")
        for key in ("scales", "amax"):
            bad = [t for t, v in d[key].items() if not isinstance(v, (int, float)) or not math.isfinite(v)] \
                if isinstance(d[key], dict) else ["<not a mapping>"]
            if bad:
                raise CalibrationError(f"{source}: {key} of tensor(s) {bad[:5]} are not finite numbers")
        bad = [t for t, v in d["scales"].items() if v <= 0]
        if bad:
            raise CalibrationError(f"{source}: scales of tensor(s) {bad[:5]} are not > 0")
        return cls(**{n: d[n] for n in names if n in d})

    def save(self, path) -> Path:
        """Write indented JSON atomically; returns the path."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path, expected_model_hash: str | None = None) -> CalibrationTable:
        """Read a table; with `expected_model_hash`, refuse one computed on another model."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(f"calibration table {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CalibrationError(f"calibration table {path} cannot be read: {e}") from None
        table = cls.from_json(text, source=str(path))
        if expected_model_hash is not None and table.model_hash != expected_model_hash:
            raise CalibrationError(
                f"calibration table {path} was computed for model sha256 {table.model_hash or '<none>'}, "
                f"not for this model (sha256 {expected_model_hash}); delete it or recalibrate")
        return table

    def to_frame(self):
        """One row per tensor: tensor, amax, scale (a pandas DataFrame, for views and reports)."""
        import pandas as pd
        return pd.DataFrame({"tensor": list(self.scales), "amax": [self.amax.get(t) for t in self.scales],
                             "scale": list(self.scales.values())})
