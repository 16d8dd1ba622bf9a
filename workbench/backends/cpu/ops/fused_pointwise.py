"""CPU kernel of workbench::PointwiseChain: interpret its program step by step with the
registered kernels of each op, exactly what the unfused chain computed."""
from __future__ import annotations

import functools

from workbench.backends.cpu.registry import NodeInfo, kernel, lookup
from workbench.ir.fused.pointwise import parse_program

_OPSETS = {"": 17, "workbench": 1}


@functools.lru_cache(maxsize=256)
def _program(text: str) -> list[dict]:
    return parse_program(text)


@kernel("PointwiseChain", domain="workbench")
def pointwise_chain(inputs, attrs, node):
    results = []
    for step in _program(attrs["program"]):
        args = [None if not ref else inputs[int(ref[2:])] if ref.startswith("in") else results[int(ref[1:])]
                for ref in step["inputs"]]
        domain = step.get("domain", "")
        fn = lookup(domain, step["op"])
        if fn is None:
            raise NotImplementedError(f"{node.name}: no CPU kernel for {domain or 'ai.onnx'}::{step['op']}")
        out = fn(args, step.get("attrs", {}), NodeInfo(_OPSETS.get(domain, 1), 1, node.name))
        results.append(out[0] if isinstance(out, (list, tuple)) else out)
    return results[-1]
