"""The memory planner against hand-computed arenas, and on real engines (arena well below the naive sum)."""
from __future__ import annotations

import workbench as wb
from workbench.builder.memory import ALIGNMENT, plan_memory
from workbench.evaluate import zoo

K = ALIGNMENT


def _overlaps(plan, a, b):
    return plan.offsets[a] < plan.offsets[b] + plan.sizes[b] and plan.offsets[b] < plan.offsets[a] + plan.sizes[a]


def test_a_chain_needs_only_two_live_buffers():
    # x -> a -> b -> c -> y: at each step one input and one output are alive
    steps = [(["x"], ["a"]), (["a"], ["b"]), (["b"], ["c"]), (["c"], ["y"])]
    sizes = {n: 4 * K for n in "xabcy"}
    plan = plan_memory(steps, sizes, ["x"], ["y"])
    assert plan.naive_bytes == 20 * K
    assert plan.arena_bytes == 8 * K
    for reader, writer in [("x", "a"), ("a", "b"), ("b", "c"), ("c", "y")]:
        assert not _overlaps(plan, reader, writer)


def test_a_residual_keeps_its_source_alive():
    # x -> a -> b; y = b + x: x lives to the end, so x, a/b and y need three slots at most
    steps = [(["x"], ["a"]), (["a"], ["b"]), (["b", "x"], ["y"])]
    sizes = {"x": 2 * K, "a": 2 * K, "b": 2 * K, "y": 2 * K}
    plan = plan_memory(steps, sizes, ["x"], ["y"])
    assert plan.arena_bytes == 6 * K
    assert not any(_overlaps(plan, "x", n) for n in "aby")


def test_views_share_their_source():
    steps = [(["x"], ["a"]), (["a"], ["v"]), (["v"], ["y"])]
    sizes = {"x": K, "a": K, "v": K, "y": K}
    plan = plan_memory(steps, sizes, ["x"], ["y"], aliases={"v": "a"})
    assert plan.offsets["v"] == plan.offsets["a"]
    assert not _overlaps(plan, "a", "y")                 # a is alive while its view is read


def test_resnet50_arena_is_under_half_the_naive_sum():
    graph, _ = wb.optimize(wb.load(zoo.resnet50(image_size=64)))
    engine = wb.build(graph, wb.BuilderConfig(batch_size=1, builder_level=0))
    memory = engine.memory
    assert memory["arena_bytes"] <= 0.5 * memory["naive_bytes"], memory
    offsets, sizes = engine.meta["memory"]["offsets"], engine.meta["memory"]["sizes"]
    assert all(offsets[n] % K == 0 for n in offsets)
    assert max(offsets[n] + sizes[n] for n in sizes) <= memory["arena_bytes"]
