"""(to be written)"""
from workbench.backends.cpu.registry import kernel  # noqa: F401
