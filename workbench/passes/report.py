"""`FusionReport`: what `optimize` did, as DataFrames (one row per rewrite, per pass, per op)."""
from __future__ import annotations

import dataclasses

import pandas as pd

from workbench.passes.base import Miss, Rewrite

__all__ = ["FusionReport", "PassSummary"]


@dataclasses.dataclass
class PassSummary:
    name: str
    rewrites: int
    nodes_before: int
    nodes_after: int
    seconds: float


@dataclasses.dataclass
class FusionReport:
    level: int
    rewrites: list[Rewrite]
    misses: list[Miss]
    passes: list[PassSummary]
    op_counts_before: dict[str, int]
    op_counts_after: dict[str, int]

    @property
    def nodes_before(self) -> int:
        return sum(self.op_counts_before.values())

    @property
    def nodes_after(self) -> int:
        return sum(self.op_counts_after.values())

    def to_dataframe(self) -> pd.DataFrame:
        """One row per rewrite: the pass, the new node(s), the original nodes and ops they replaced,
        and the graph's node count before and after that pass."""
        counts = {p.name: p for p in self.passes}
        return pd.DataFrame({
            "pass": [r.pass_name for r in self.rewrites],
            "new_node": [", ".join(r.new_nodes) for r in self.rewrites],
            "new_op": [", ".join(r.new_ops) for r in self.rewrites],
            "replaced_nodes": [list(r.replaced) for r in self.rewrites],
            "replaced_ops": [list(r.replaced_ops) for r in self.rewrites],
            "nodes_before": [counts[r.pass_name].nodes_before for r in self.rewrites],
            "nodes_after": [counts[r.pass_name].nodes_after for r in self.rewrites],
            "detail": [r.detail for r in self.rewrites],
        }, columns=["pass", "new_node", "new_op", "replaced_nodes", "replaced_ops", "nodes_before",
                    "nodes_after", "detail"])

    def summary(self) -> pd.DataFrame:
        """One row per pass that ran: rewrites, node counts around it, time."""
        return pd.DataFrame([dataclasses.asdict(p) for p in self.passes],
                            columns=["name", "rewrites", "nodes_before", "nodes_after", "seconds"])

    def op_counts(self) -> pd.DataFrame:
        """One row per op type: count before and after optimization."""
        ops = sorted(set(self.op_counts_before) | set(self.op_counts_after))
        return pd.DataFrame({"op": ops, "before": [self.op_counts_before.get(o, 0) for o in ops],
                             "after": [self.op_counts_after.get(o, 0) for o in ops]})

    def misses_dataframe(self) -> pd.DataFrame:
        """Why candidate patterns were left alone ("not fused because ...")."""
        return pd.DataFrame([dataclasses.asdict(m) for m in self.misses], columns=["pass_name", "node", "reason"])

    def __repr__(self) -> str:
        done = ", ".join(f"{p.name}: {p.rewrites}" for p in self.passes if p.rewrites) or "nothing"
        return (f"<FusionReport level {self.level}: {self.nodes_before} -> {self.nodes_after} nodes; "
                f"rewrites {done}>")
