"""Which of onnx's backend node tests we run, and why the others are left out.

Selection is explicit in both directions: a node test runs when every op in its graph (nested
subgraphs included) is declared by the CPU backend; a test is left out only because one of its
ops is listed in UNDECLARED_OPS below with a reason. An op that appears in onnx's tests but in
neither place fails `test_every_node_test_op_is_accounted_for`, so nothing is dropped silently.
"""
from __future__ import annotations

import functools

import onnx

from workbench.backends.cpu import declared_ops

# op -> why the CPU backend does not declare it (yet)
UNDECLARED_OPS: dict[str, str] = {}

# node test name -> why it fails although its ops are declared
KNOWN_FAILURES: dict[str, str] = {}


def ops_in(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found |= ops_in(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    found |= ops_in(g)
    return found


@functools.lru_cache(maxsize=1)
def node_test_ops() -> dict[str, frozenset[str]]:
    """node test name (without the _cpu suffix) -> ops its model uses."""
    from onnx.backend.test.loader import load_model_tests
    return {case.name: frozenset(ops_in(case.model.graph)) for case in load_model_tests(kind="node")}


def selected_tests() -> list[str]:
    declared = set(declared_ops())
    return sorted(name for name, ops in node_test_ops().items() if ops and ops <= declared)


def excluded_tests() -> dict[str, list[str]]:
    """test name -> its undeclared ops (the reason it is left out)."""
    declared = set(declared_ops())
    return {name: sorted(ops - declared) for name, ops in node_test_ops().items() if not ops or not ops <= declared}
