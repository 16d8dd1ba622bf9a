"""The memory planner: every activation of an engine gets an offset in one arena, reusing the bytes
of tensors that are dead by the time it is written (greedy by size, first fit over lifetimes, as
TensorRT and TFLite plan theirs). Views (a Reshape the tactic runs as a reinterpretation) share
their source's bytes and keep it alive as long as they are read.
"""
from __future__ import annotations

import dataclasses

__all__ = ["MemoryPlan", "alias_root", "plan_memory", "ALIGNMENT"]

ALIGNMENT = 256          # bytes; what cudaMalloc guarantees and vectorized kernels rely on


@dataclasses.dataclass
class MemoryPlan:
    offsets: dict[str, int]          # tensor -> byte offset in the arena (views: their source's offset)
    sizes: dict[str, int]            # tensor -> bytes
    aliases: dict[str, str]          # view tensor -> the tensor whose bytes it reads
    arena_bytes: int
    naive_bytes: int                 # every activation in its own buffer

    def report(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes,
                "ratio": round(self.arena_bytes / self.naive_bytes, 4) if self.naive_bytes else 0.0,
                "tensors": len(self.sizes)}


def alias_root(name: str, aliases: dict[str, str]) -> str:
    """The tensor whose bytes a view (of a view ...) reads; a tensor that is no view is its own."""
    while name in aliases:
        name = aliases[name]
    return name


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def plan_memory(steps: list[tuple[list[str], list[str]]], sizes: dict[str, int], inputs: list[str],
                outputs: list[str], aliases: dict[str, str] | None = None,
                last_use: dict[str, int] | None = None) -> MemoryPlan:
    """`steps` are (inputs, outputs) per layer in execution order; `sizes` hold the bytes of every
    activation (weights are not in it and are not planned); `last_use` stretches lifetimes (a
    tensor's bytes stay its own up to that layer index: builder/streams.py, for parallel streams)."""
    aliases = dict(aliases or {})

    def root(name: str) -> str:
        return alias_root(name, aliases)

    first: dict[str, int] = {name: -1 for name in inputs if name in sizes}
    last: dict[str, int] = dict(first)
    for index, (reads, writes) in enumerate(steps):
        for name in writes:
            if name in sizes:
                first.setdefault(root(name), index)
                last[root(name)] = max(last.get(root(name), index), index)
        for name in reads:
            if name in sizes:
                last[root(name)] = max(last.get(root(name), index), index)
    for name, index in (last_use or {}).items():
        if root(name) in last:
            last[root(name)] = max(last[root(name)], index)
    end = len(steps)
    for name in outputs:
        if name in sizes:
            last[root(name)] = end
    placed: list[tuple[int, int, int, int]] = []      # (offset, size, first, last)
    offsets: dict[str, int] = {}
    for name in sorted(first, key=lambda n: (-sizes[n], first[n])):
        size = _align(max(sizes[name], 1))
        busy = sorted((o, s) for o, s, f, l in placed if not (l < first[name] or f > last[name]))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        offsets[name] = offset
        placed.append((offset, size, first[name], last[name]))
    for view in aliases:
        offsets[view] = offsets.get(root(view), 0)
    arena = max((o + s for o, s, _, _ in placed), default=0)
    naive = sum(_align(max(sizes[n], 1)) for n in sizes if n not in aliases)
    return MemoryPlan(offsets, dict(sizes), aliases, arena, naive)
