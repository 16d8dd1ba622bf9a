"""merge_attention_projections: BERT's Q, K and V projections become one [K, 3N] FusedGemm whose
output a strided SplitView hands to the bshd attention; numbers unchanged; it stays away from
attentions that do not read [B, S, H, D] projections in place."""
from __future__ import annotations

import numpy as np
from pass_checks import assert_same_outputs

import workbench as wb
from workbench.evaluate import zoo


def _feeds(batch=2, seq=16):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (batch, seq), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_bert_projections_merge_into_one_gemm_per_layer():
    graph = wb.load(zoo.bert())
    optimized, report = wb.optimize(graph)
    layers = sum(1 for n in graph.nodes if n.op_type == "Softmax")
    splits = [n for n in optimized.model.graph if n.op_type == "SplitView"]
    assert len(splits) == layers
    for split in splits:
        assert split.attributes["strided"].value == 1 and list(split.attributes["split"].value) == [
            int(d) for d in [split.outputs[0].shape[-1]] * 3]
        merged = split.inputs[0].producer()
        assert merged.op_type == "FusedGemm" and merged.inputs[1].const_value.shape[1] == 3 * split.outputs[0].shape[-1]
        assert all(u.node.op_type == "Reshape" for o in split.outputs for u in o.uses())
    rows = report.to_dataframe().query("`pass` == 'merge_attention_projections'")
    assert len(rows) == layers and all("query" in " ".join(r) and "value" in " ".join(r)
                                       for r in rows["replaced_nodes"])
    for config in (None, wb.BuilderConfig(precision="fp16")):
        assert_same_outputs(graph, optimized, _feeds(), config=config, tol=1e-5 if config is None else 2e-2)


def test_needs_the_attention_to_read_heads_in_place():
    """Without the bshd attention the split parts would reach a transpose: nothing merges, and the
    report says why not for every attention."""
    graph = wb.load(zoo.bert())
    optimized, report = wb.optimize(graph, disable=["fold_attention_transposes"])
    assert "workbench::SplitView" not in optimized.op_counts()
    assert not [m for m in report.misses if m.pass_name == "merge_attention_projections"]
    again, report = wb.optimize(graph, only=["fuse_attention", "fold_attention_transposes",
                                             "merge_attention_projections"])
    misses = [m.reason for m in report.misses if m.pass_name == "merge_attention_projections"]
    assert misses and all("FusedGemm" in m for m in misses)      # the projections' bias Adds are not fused yet
    assert "workbench::SplitView" not in again.op_counts()
