"""`TimingCache`: what the autotuner measured, as a readable JSON file, so a warm rebuild times nothing.

An entry is keyed by (device, backend version, layer signature, precision, shapes), as DESIGN.md
says: the layer signature is its op, domain, attributes, layout and the shapes/dtypes of what it
reads, so two layers that would run the same code share one entry (ResNet's repeated blocks), and
a different GPU, backend release or shape never reuses a stale choice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import Layer
from workbench.errors import BuildError

__all__ = ["TimingCache", "TimingEntry", "layer_signature"]
log = logging.getLogger(__name__)

FORMAT = "workbench-timing-cache"
VERSION = 1


@dataclasses.dataclass
class TimingEntry:
    tactic: str                                   # the choice
    times_ms: dict[str, float]                    # median time of every valid candidate
    rejected: dict[str, str]                      # candidate -> why it may not be chosen
    key: dict[str, Any]                           # the readable key (for people reading the file)


def layer_signature(layer: Layer, input_specs: list[tuple[tuple, str] | None]) -> dict[str, Any]:
    """What decides which tactic is fastest for a layer: not its name, not its weights' values."""
    return {"op": layer.qualified_op, "opset": layer.opset, "layout": layer.layout, "sparse": layer.sparse,
            "attrs": {k: _plain(v) for k, v in sorted(layer.attrs.items())},
            "inputs": [None if s is None else [_dims(s[0]), s[1]] for s in input_specs],
            "outputs": [[_dims(s), d] for s, d in zip(layer.output_shapes, layer.output_dtypes)]}


def _dims(shape) -> list | None:
    return None if shape is None else list(shape)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16],
                "shape": list(value.shape), "dtype": value.dtype.name}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class TimingCache:
    """In memory, optionally backed by a JSON file (read at open, written by `save`)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, TimingEntry] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(f"timing cache {self.path}: not readable JSON ({exc}); delete it or pass another path") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BuildError(f"timing cache {self.path}: not a workbench timing cache (format {data.get('format')!r} "
                             f"if any, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            log.warning("timing cache %s has version %s, expected %s: starting empty", self.path,
                        data.get("version"), VERSION)
            return
        for digest, entry in data.get("entries", {}).items():
            self.entries[digest] = TimingEntry(**entry)
        log.info("timing cache %s: %d entries read", self.path, len(self.entries))

    @staticmethod
    def digest(device: str, backend_version: str, signature: dict, precision: str) -> tuple[str, dict]:
        key = {"device": device, "backend": backend_version, "precision": precision, "layer": signature}
        text = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32], key

    def get(self, digest: str) -> TimingEntry | None:
        entry = self.entries.get(digest)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, digest: str, entry: TimingEntry) -> None:
        self.entries[digest] = entry

    def save(self) -> None:
        """Write atomically: a failure leaves the previous file as it was."""
        if self.path is None:
            return
        data = {"format": FORMAT, "version": VERSION,
                "entries": {k: dataclasses.asdict(v) for k, v in sorted(self.entries.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1, default=str)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<TimingCache {self.path or '(memory)'}: {len(self)} entries, {self.hits} hits, {self.misses} misses>"
