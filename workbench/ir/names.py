"""Fresh names for nodes, values and layers: the passes and the builder both add things to a graph
whose names must stay unique."""
from __future__ import annotations

from typing import Container

__all__ = ["free_name"]


def free_name(base: str, taken: Container[str]) -> str:
    """`base`, or `base_2`, `base_3`... whichever is not in `taken`."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name
