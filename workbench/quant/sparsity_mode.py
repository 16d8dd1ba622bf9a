"""`BuilderConfig(sparsity=...)`: which layers may use 2:4 sparse kernels.

    "disable"   dense kernels only (the default)
    "enable"    layers whose weights already are 2:4 along the reduction dimension are marked
                sparse-eligible; a sparse tactic may then compete for them in the autotuner
                (TensorRT's SPARSE_WEIGHTS flag: it never prunes for you)
    "force"     prune every eligible weight to 2:4 first (magnitude, `prune_2to4`), then as
                "enable"; layers whose reduction length is not a multiple of 4 are skipped and
                listed, never an error

The marks live in the network's meta, not on the layers, so a tactic (or a reader of a plan file)
finds them without any Layer attribute:

    meta["sparse_weights"]  weight tensors that are 2:4 (the stored int8 tensor for Q/DQ weights)
    meta["sparse_layers"]   layers whose weight operand is one of them
    meta["sparsity"]        {"mode", and for "force": "pruned", "skipped" [{tensor, node, reason}]}
"""
from __future__ import annotations

import logging
from typing import Iterable

from workbench.ir import Graph
from workbench.quant.graph_weights import is_2to4, prune_2to4

__all__ = ["prepare_sparsity", "sparsity_meta"]
log = logging.getLogger(__name__)


def prepare_sparsity(graph: Graph, mode: str) -> tuple[Graph, dict]:
    """(the graph to build, the meta["sparsity"] report). "force" returns a pruned copy."""
    if mode == "disable":
        return graph, {}
    if mode == "enable":
        return graph, {"mode": "enable"}
    if mode != "force":
        raise ValueError(f"sparsity mode {mode!r}: choose disable, enable or force")
    pruned, table = prune_2to4(graph)
    done = table[table["pruned"]]
    skipped = table[~table["pruned"]]
    report = {"mode": "force", "pruned": done["tensor"].tolist(),
              "skipped": skipped[["tensor", "node", "reason"]].to_dict("records")}
    log.info("sparsity='force': pruned %d weights to 2:4%s", len(done),
             "; skipped " + "; ".join(f"{r['node']} ({r['reason']})" for r in report["skipped"])
             if report["skipped"] else "")
    return pruned, report


def sparsity_meta(graph: Graph, layers: Iterable, report: dict) -> dict:
    """The network meta entries for a built graph: which weights are 2:4 and which layers read them
    as their weight operand (directly, or through the DequantizeLinear of an int8 weight)."""
    sparse = sorted(name for name, ok in is_2to4(graph).items() if ok)
    layers = list(layers)
    dequantized = {l.outputs[0]: l.inputs[0] for l in layers if l.op == "DequantizeLinear" and l.outputs}
    marked = []
    for layer in layers:
        if layer.op == "DequantizeLinear" or len(layer.inputs) < 2:
            continue
        weight = dequantized.get(layer.inputs[1], layer.inputs[1])
        if weight in sparse:
            marked.append(layer.name)
    log.info("sparsity=%r: %d of the weights are 2:4; sparse-eligible layers: %s", report.get("mode"),
             len(sparse), marked or "none")
    return {"sparse_weights": sparse, "sparse_layers": marked, "sparsity": dict(report)}
