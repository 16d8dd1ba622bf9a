"""builder/streams.py: independent branches get their own streams, a layer waits for producers on
other streams, and the memory plan never lets two tensors that a parallel schedule may hold at the
same time share bytes (checked against the happens-before relation of the schedule)."""
from __future__ import annotations

import itertools

import pytest

from workbench.builder.memory import plan_memory
from workbench.builder.streams import assign_streams, concurrent_last_use


def inception(blocks: int = 2):
    """`blocks` inception blocks in a row: four branches (1, 2, 2 and 2 layers) joined by a concat."""
    steps, x = [], "x"
    for b in range(blocks):
        outs = []
        for branch, depth in enumerate((1, 2, 2, 2)):
            t = x
            for d in range(depth):
                y = f"b{b}.{branch}.{d}"
                steps.append(([t], [y]))
                t = y
            outs.append(t)
        x = f"cat{b}"
        steps.append((outs, [x]))
    return steps, x


def readers_of(steps):
    readers = {}
    for index, (reads, _) in enumerate(steps):
        for name in reads:
            readers.setdefault(name, []).append(index)
    return readers


def happens_before(steps, plan):
    """done[i]: the layers certainly finished when layer i starts (stream order and waits)."""
    done, last_on = [], {}
    for index in range(len(steps)):
        known = set()
        previous = last_on.get(plan.stream[index])
        for p in ([previous] if previous is not None else []) + plan.waits[index]:
            known |= done[p] | {p}
        last_on[plan.stream[index]] = index
        done.append(known)
    return done


def test_branches_get_streams_and_the_join_waits():
    steps, _ = inception(1)
    plan = assign_streams(steps, set(), 4)
    assert plan.stream == [0, 1, 1, 2, 2, 3, 3, 0] and plan.count == 4
    assert plan.waits[7] == [2, 4, 6] and all(not w for w in plan.waits[:7])
    assert assign_streams(steps, set(), 1).stream == [0] * 8
    assert assign_streams(steps, set(), 2).stream == [0, 1, 1, 0, 0, 1, 1, 0]


def test_views_run_nothing_and_pass_their_producer_on():
    steps = [(["x"], ["a"]), (["a"], ["a_view"]), (["a_view"], ["b"]), (["x"], ["c"]), (["b", "c"], ["y"])]
    plan = assign_streams(steps, {1}, 2)
    assert plan.stream[2] == plan.stream[0] and plan.waits[1] == [] and plan.waits[4] == [3]


@pytest.mark.parametrize("max_streams", [2, 3, 4])
def test_no_two_tensors_held_at_once_share_bytes(max_streams):
    steps, out = inception(3)
    plan = assign_streams(steps, set(), max_streams)
    readers = readers_of(steps)
    sizes = {name: 1000 * (1 + i % 3) for i, name in enumerate(n for _, w in steps for n in w)}
    memory = plan_memory(steps, sizes, [], [out], None, concurrent_last_use(steps, set(), plan, readers))
    done = happens_before(steps, plan)
    producer = {n: i for i, (_, writes) in enumerate(steps) for n in writes}
    for a, b in itertools.combinations(sizes, 2):
        oa, ob = memory.offsets[a], memory.offsets[b]
        if oa + sizes[a] <= ob or ob + sizes[b] <= oa:
            continue
        a_done = set(readers.get(a, [])) <= done[producer[b]] and producer[a] in done[producer[b]]
        b_done = set(readers.get(b, [])) <= done[producer[a]] and producer[b] in done[producer[a]]
        assert a_done or b_done, f"{a} and {b} share bytes but may be alive together"
    sequential = plan_memory(steps, sizes, [], [out])
    assert memory.arena_bytes >= sequential.arena_bytes       # the price: less reuse inside a block
    assert memory.arena_bytes < memory.naive_bytes            # but still reuse across blocks
