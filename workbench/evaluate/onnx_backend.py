"""`onnx.backend.base.Backend` adapter, so onnx's own conformance suite (and any tool that
speaks that protocol) can drive the workbench: prepare = load + build, run = one context run."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from workbench.builder import BuilderConfig
from workbench.ir import load
from workbench.runtime import Engine, build

__all__ = ["WorkbenchBackend", "WorkbenchRep", "prepare", "run_model", "supports_device"]


class WorkbenchRep(BackendRep):
    def __init__(self, engine: Engine):
        self.engine = engine
        self.context = engine.create_context()

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        names = [s.name for s in self.engine.inputs]
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(names, inputs))
        results = self.context.run(feeds)
        out_names = [s.name for s in self.engine.outputs]
        return namedtupledict("Outputs", out_names)(*[results[n] for n in out_names])


class WorkbenchBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> WorkbenchRep:
        if not cls.supports_device(device):
            raise ValueError(f"device {device!r} is not supported by the workbench CPU backend")
        return WorkbenchRep(build(load(model), BuilderConfig(**{"backend": "cpu", "builder_level": 0, **kwargs})))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Sequence[np.ndarray] | dict, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = WorkbenchBackend.prepare
run_model = WorkbenchBackend.run_model
supports_device = WorkbenchBackend.supports_device
