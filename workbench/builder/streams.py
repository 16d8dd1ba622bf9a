"""Independent branches on separate CUDA streams (TensorRT's multi-stream execution of an
inception block's parallel convolutions), and what that means for the memory plan.

Assignment, in execution order: a layer continues the stream of its first input's producer (a graph
input: stream 0), unless another reader of that tensor already did; then the k-th extra reader takes
stream (s + k) mod N. A layer
waits (an event) for each producer on another stream; order on one stream is implicit. View layers
run nothing: their outputs count as made by their source's producer.

Memory: the sequential planner lets tensor B reuse A's bytes once A's last reader is behind B's
writer in the layer order. With streams that order no longer implies completion, so A's lifetime
is stretched to the last layer k that might still overlap a reader of A: k does not (through
waits and stream order) happen after every reader of A. Past that layer every reader of A is done
whatever the streams do, so reuse stays safe; the plan only loses reuse inside a parallel region.
"""
from __future__ import annotations

import dataclasses

__all__ = ["StreamPlan", "assign_streams", "concurrent_last_use"]


@dataclasses.dataclass
class StreamPlan:
    count: int                      # streams used (1 = everything in order on one)
    stream: list[int]               # per layer
    waits: list[list[int]]          # per layer: earlier layers on other streams it waits for

    def report(self) -> dict:
        return {"count": self.count, "stream": self.stream, "waits": self.waits,
                "parallel_layers": sum(1 for s in self.stream if s)}


def assign_streams(steps: list[tuple[list[str], list[str]]], views: set[int], max_streams: int) -> StreamPlan:
    """`steps` are (inputs, outputs) per layer in execution order; `views` the indices of view layers."""
    producer: dict[str, int] = {}
    stream: list[int] = []
    waits: list[list[int]] = []
    handed: dict[str, int] = {}
    for index, (reads, writes) in enumerate(steps):
        made_by = list(dict.fromkeys(producer[n] for n in reads if n in producer))
        if index in views:                              # runs nothing: its outputs are its source's
            source = made_by[0] if made_by else None
            stream.append(stream[source] if source is not None else 0)
            waits.append([])
            for name in writes:
                if source is not None:
                    producer[name] = source
            continue
        data = [n for n in reads if n]
        if max_streams <= 1 or not data:
            chosen = 0
        else:                                           # the first input's readers fan out over streams
            extra = handed.get(data[0], 0)
            handed[data[0]] = extra + 1
            base = stream[producer[data[0]]] if data[0] in producer else 0
            chosen = (base + extra) % max_streams
        stream.append(chosen)
        waits.append([p for p in made_by if stream[p] != chosen])
        for name in writes:
            producer[name] = index
    used = len(set(s for i, s in enumerate(stream) if i not in views)) if stream else 1
    return StreamPlan(max(used, 1), stream, waits)


def concurrent_last_use(steps: list[tuple[list[str], list[str]]], views: set[int], plan: StreamPlan,
                        readers: dict[str, list[int]]) -> dict[str, int]:
    """For each tensor (`readers`: tensor -> indices of the layers that read it, views resolved to
    their source), the last layer index that may still run while one of its readers does."""
    before: list[int] = []                              # bitsets: layers done before layer i starts
    last_on: dict[int, int] = {}
    for index in range(len(steps)):
        done = 0
        if index not in views:
            previous = last_on.get(plan.stream[index])
            for p in ([previous] if previous is not None else []) + plan.waits[index]:
                done |= before[p] | (1 << p)
            last_on[plan.stream[index]] = index
        before.append(done)
    running = [i for i in range(len(steps)) if i not in views]
    extended = {}
    for tensor, reads in readers.items():
        if not reads:
            continue
        mask = 0
        for r in reads:
            mask |= 1 << r
        first = min(reads)
        extended[tensor] = max((k for k in running if k >= first and before[k] & mask != mask), default=max(reads))
    return extended
