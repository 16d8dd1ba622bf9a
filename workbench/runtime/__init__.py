"""Engines, execution contexts and the plan file format."""
from workbench.runtime.context import ExecutionContext
from workbench.runtime.engine import Engine, build

__all__ = ["Engine", "ExecutionContext", "build"]
