"""Layered (Sugiyama-style) layout of a directed graph, top to bottom, in pure Python.

Why our own: a static SVG must render without graphviz installed (CI, laptops, exported HTML),
and ONNX graphs are DAGs of a few hundred nodes, which a simple layered layout handles well:

1. break cycles (reverse DFS back edges; ONNX graphs have none, focus subsets neither),
2. longest-path layering, then sources (inputs, constants) pulled down next to their first consumer,
3. long edges split by dummy nodes, one per layer crossed,
4. barycentric ordering sweeps (down and up), keeping the order with the fewest crossings,
5. coordinates: each node pulled to the mean x of its neighbours, overlaps removed by an
   order-preserving least-squares projection (isotonic regression with minimum separations).

`dot_layout` gives the same `Layout` from graphviz `dot -Tplain` when it is installed.

Example:
    >>> lay = layered_layout({"a": (80, 40), "b": (80, 40)}, [("a", "b")])
    >>> lay.nodes["b"][1] > lay.nodes["a"][1]
    True
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import shlex
import subprocess
from typing import Hashable, Sequence

__all__ = ["Layout", "layered_layout", "dot_layout"]
log = logging.getLogger(__name__)

Point = tuple[float, float]

LAYER_GAP = 38.0      # vertical space between layers (arrows live here)
NODE_GAP = 26.0       # minimum horizontal space between neighbours in a layer
DUMMY_WIDTH = 12.0
MARGIN = 10.0


@dataclasses.dataclass
class Layout:
    """Node centres and edge routes, in px, origin top-left.

    `edges[i]` routes the i-th input edge from the bottom of its tail to the top of its head.
    `curve` says how to read the points: "smooth" (through-points, draw vertical-tangent cubics
    between them) or "bezier" (cubic Bezier control points p0 c1 c2 p1 c2 c3 p2 ...).
    """
    width: float
    height: float
    nodes: dict[Hashable, Point]
    edges: list[list[Point]]
    curve: str = "smooth"


def layered_layout(sizes: dict[Hashable, tuple[float, float]], edges: Sequence[tuple[Hashable, Hashable]],
                   *, sweeps: int = 12) -> Layout:
    """Lay out `sizes` (node -> (width, height)) joined by `edges` (tail, head), top to bottom."""
    names = list(sizes)
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    pairs = [(index[u], index[v]) for u, v in edges]
    unique = list(dict.fromkeys(p for p in pairs if p[0] != p[1]))
    forward = _acyclic(n, unique)
    layer = _layers(n, forward)

    # split long edges with dummies; `chains[(u, v)]` lists the vertices the edge passes through
    width = [sizes[name][0] for name in names]
    height = [sizes[name][1] for name in names]
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    chains: dict[tuple[int, int], list[int]] = {}
    for u, v in forward:
        chain = [u]
        for lv in range(layer[u] + 1, layer[v]):
            d = len(layer)
            layer.append(lv)
            width.append(DUMMY_WIDTH)
            height.append(0.0)
            succ.append([])
            pred.append([])
            chain.append(d)
        chain.append(v)
        for a, b in zip(chain, chain[1:]):
            succ[a].append(b)
            pred[b].append(a)
        chains[(u, v)] = chain
    total = len(layer)
    is_dummy = [i >= n for i in range(total)]

    depth = max(layer, default=-1) + 1
    rows: list[list[int]] = [[] for _ in range(depth)]
    for v in _initial_order(total, succ):
        rows[layer[v]].append(v)
    rows = _order(rows, succ, pred, sweeps)
    xs = _coordinates(rows, succ, pred, width, is_dummy)

    band = [max((height[v] for v in row), default=0.0) for row in rows]
    top, y = [], MARGIN
    for h in band:
        top.append(y)
        y += h + LAYER_GAP
    ys = [top[layer[v]] + band[layer[v]] / 2 for v in range(total)]
    left = min((xs[v] - width[v] / 2 for v in range(total)), default=0.0)
    xs = [x - left + MARGIN for x in xs]
    right = max((xs[v] + width[v] / 2 for v in range(total)), default=0.0)

    routes = _routes(pairs, forward, chains, xs, ys, height, band, layer)
    return Layout(right + MARGIN, max(y - LAYER_GAP + MARGIN, 2 * MARGIN),
                  {name: (xs[i], ys[i]) for i, name in enumerate(names)}, routes)


# -- 1, 2: acyclic, layers ------------------------------------------------------------------
def _acyclic(n: int, edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The edges with DFS back edges reversed (and dropped if that duplicates one)."""
    out: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        out[u].append(v)
    state = [0] * n                       # 0 new, 1 on stack, 2 done
    back: set[tuple[int, int]] = set()
    for root in range(n):
        if state[root]:
            continue
        stack = [(root, iter(out[root]))]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if state[child] == 1:
                    back.add((node, child))
                elif state[child] == 0:
                    state[child] = 1
                    stack.append((child, iter(out[child])))
                    break
            else:
                state[node] = 2
                stack.pop()
    if back:
        log.debug("layout: reversing %d back edges", len(back))
    result = [(v, u) if (u, v) in back else (u, v) for u, v in edges]
    return list(dict.fromkeys(result))


def _layers(n: int, edges: list[tuple[int, int]]) -> list[int]:
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for u, v in edges:
        succ[u].append(v)
        indeg[v] += 1
    order = [v for v in range(n) if indeg[v] == 0]
    for v in order:                       # Kahn; `order` grows while we walk it
        for w in succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                order.append(w)
    layer = [0] * n
    for v in order:
        for w in succ[v]:
            layer[w] = max(layer[w], layer[v] + 1)
    has_pred = [False] * n
    for _, v in edges:
        has_pred[v] = True
    for v in reversed(order):             # pull sources down to just above their first consumer
        if not has_pred[v] and succ[v]:
            layer[v] = min(layer[w] for w in succ[v]) - 1
    return layer


# -- 3, 4: ordering -------------------------------------------------------------------------
def _initial_order(total: int, succ) -> list[int]:
    """Depth-first from the sources, so a branch's nodes start out next to each other."""
    seen = [False] * total
    order: list[int] = []
    has_pred = [False] * total
    for a in range(total):
        for b in succ[a]:
            has_pred[b] = True
    for root in [v for v in range(total) if not has_pred[v]] + list(range(total)):
        if seen[root]:
            continue
        stack = [root]
        while stack:
            v = stack.pop()
            if seen[v]:
                continue
            seen[v] = True
            order.append(v)
            stack.extend(reversed(succ[v]))
    return order


def _order(rows: list[list[int]], succ, pred, sweeps: int) -> list[list[int]]:
    best, best_cross = [r[:] for r in rows], _crossings(rows, succ)
    for sweep in range(sweeps):
        if best_cross == 0:
            break
        down = sweep % 2 == 0
        span = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        for i in span:
            ref = rows[i - 1] if down else rows[i + 1]
            pos = {v: k for k, v in enumerate(ref)}
            nbrs = pred if down else succ
            keyed = []
            for k, v in enumerate(rows[i]):
                ps = [pos[w] for w in nbrs[v] if w in pos]
                keyed.append((sum(ps) / len(ps) if ps else k, k, v))
            rows[i] = [v for _, _, v in sorted(keyed)]
        cross = _crossings(rows, succ)
        if cross < best_cross:
            best, best_cross = [r[:] for r in rows], cross
    log.debug("layout: %d crossings after ordering", best_cross)
    return best


def _crossings(rows: list[list[int]], succ) -> int:
    total = 0
    for upper, lower in zip(rows, rows[1:]):
        pos = {v: k for k, v in enumerate(lower)}
        ends = sorted((ku, pos[w]) for ku, v in enumerate(upper) for w in succ[v] if w in pos)
        seen: list[int] = []
        for _, kv in ends:                 # pairs (a, b) with a before b but b's end left of a's
            total += len(seen) - bisect.bisect_right(seen, kv)
            bisect.insort(seen, kv)
    return total


# -- 5: coordinates -------------------------------------------------------------------------
def _coordinates(rows, succ, pred, width, is_dummy, iterations: int = 10) -> list[float]:
    xs = [0.0] * len(width)
    for row in rows:
        x = 0.0
        for v in row:
            xs[v] = x + width[v] / 2
            x += width[v] + NODE_GAP
    for it in range(iterations + 1):
        down = it % 2 == 0
        for row in rows if down else rows[::-1]:
            wanted = []
            for v in row:
                if it == iterations:       # last pass: long edges drop straight, real nodes stay put
                    nbrs = pred[v] if is_dummy[v] else []
                else:
                    nbrs = (pred[v] if down else succ[v]) if it < iterations - 2 else pred[v] + succ[v]
                wanted.append(sum(xs[w] for w in nbrs) / len(nbrs) if nbrs else xs[v])
            weights = [3.0 if is_dummy[v] else 1.0 for v in row]
            for v, x in zip(row, _project(wanted, [width[v] for v in row], weights)):
                xs[v] = x
    return xs


def _project(wanted: list[float], widths: list[float], weights: list[float]) -> list[float]:
    """Closest positions (weighted least squares) to `wanted` keeping order and no overlap.

    With offsets o_i (the packed positions), y_i = x_i - o_i must be non-decreasing: isotonic
    regression of wanted_i - o_i, solved by pool-adjacent-violators.
    """
    offsets, o = [], 0.0
    for k, w in enumerate(widths):
        if k:
            o += (widths[k - 1] + w) / 2 + NODE_GAP
        offsets.append(o)
    blocks: list[list[float]] = []         # [weighted sum, weight, count]
    for target, off, wt in zip(wanted, offsets, weights):
        blocks.append([(target - off) * wt, wt, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, w, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w
            blocks[-1][2] += c
    out: list[float] = []
    for s, w, c in blocks:
        out.extend([s / w] * c)
    return [y + off for y, off in zip(out, offsets)]


# -- edges ----------------------------------------------------------------------------------
def _routes(pairs, forward, chains, xs, ys, height, band, layer) -> list[list[Point]]:
    """Through-points per input edge; ports spread along the box edge in the order of the far end."""
    fset = set(forward)
    routes_by_pair: dict[tuple[int, int], list[Point]] = {}
    out_ports: dict[int, list[tuple[float, tuple[int, int]]]] = {}
    in_ports: dict[int, list[tuple[float, tuple[int, int]]]] = {}
    for key, chain in chains.items():
        out_ports.setdefault(chain[0], []).append((xs[chain[1]], key))
        in_ports.setdefault(chain[-1], []).append((xs[chain[-2]], key))
    start: dict[tuple[int, int], float] = {}
    end: dict[tuple[int, int], float] = {}
    for ports, into in ((out_ports, start), (in_ports, end)):
        for v, items in ports.items():
            items.sort(key=lambda item: item[0])
            spread = min(40.0, 12.0 * (len(items) - 1))
            for k, (_, key) in enumerate(items):
                into[key] = xs[v] + (spread * (k / (len(items) - 1) - 0.5) if len(items) > 1 else 0.0)
    for key, chain in chains.items():
        u, v = chain[0], chain[-1]
        points = [(start[key], ys[u] + height[u] / 2)]
        for d in chain[1:-1]:            # run straight through the dummy's layer band
            half = band[layer[d]] / 2
            points += [(xs[d], ys[d] - half), (xs[d], ys[d] + half)]
        points.append((end[key], ys[v] - height[v] / 2))
        routes_by_pair[key] = points
    routes = []
    for u, v in pairs:
        if u == v:                         # self loop: a small hook on the right
            x, y, h = xs[u], ys[u], height[u]
            routes.append([(x, y + h / 2), (x + 30, y + h / 2 + 12), (x + 30, y - h / 2 - 12), (x, y - h / 2)])
        elif (u, v) in fset and (u, v) in routes_by_pair:
            routes.append(routes_by_pair[(u, v)])
        else:                              # reversed for layering: draw it back the other way
            routes.append(routes_by_pair[(v, u)][::-1])
    return routes


# -- graphviz -------------------------------------------------------------------------------
def dot_layout(sizes: dict[Hashable, tuple[float, float]], edges: Sequence[tuple[Hashable, Hashable]],
               *, ellipses: set[Hashable] = frozenset(), dot: str = "dot", timeout: float = 60.0) -> Layout:
    """The same `Layout` computed by graphviz `dot -Tplain` (spline control points)."""
    names = list(sizes)
    index = {name: i for i, name in enumerate(names)}
    lines = ["digraph G {", "rankdir=TB; nodesep=0.35; ranksep=0.45; splines=spline;",
             'node [label="", fixedsize=true, shape=box]; edge [arrowhead=none];']
    for name, (w, h) in sizes.items():
        shape = ", shape=ellipse" if name in ellipses else ""
        lines.append(f"n{index[name]} [width={w / 72:.4f}, height={h / 72:.4f}{shape}];")
    pairs = [(index[u], index[v]) for u, v in edges]
    for u, v in dict.fromkeys(pairs):
        lines.append(f"n{u} -> n{v};")
    lines.append("}")
    proc = subprocess.run([dot, "-Tplain"], input="\n".join(lines), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"graphviz dot failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    width = height = 0.0
    centres: dict[int, Point] = {}
    splines: dict[tuple[int, int], list[Point]] = {}
    for line in proc.stdout.splitlines():
        parts = shlex.split(line)
        if not parts:
            continue
        if parts[0] == "graph":
            width, height = float(parts[2]) * 72.0, float(parts[3]) * 72.0
        elif parts[0] == "node":
            centres[int(parts[1][1:])] = (float(parts[2]) * 72.0, height - float(parts[3]) * 72.0)
        elif parts[0] == "edge":
            u, v, count = int(parts[1][1:]), int(parts[2][1:]), int(parts[3])
            coords = parts[4:4 + 2 * count]
            splines[(u, v)] = [(float(coords[2 * k]) * 72.0, height - float(coords[2 * k + 1]) * 72.0)
                               for k in range(count)]
    routes = []
    for u, v in pairs:
        if (u, v) in splines:
            routes.append(splines[(u, v)])
        else:                                 # dot drew it reversed (cycle) or not at all
            routes.append(splines.get((v, u), [centres[u], centres[u], centres[v], centres[v]])[::-1])
    shift = MARGIN
    return Layout(width + 2 * MARGIN, height + 2 * MARGIN,
                  {name: (centres[i][0] + shift, centres[i][1] + shift) for i, name in enumerate(names)},
                  [[(x + shift, y + shift) for x, y in r] for r in routes], curve="bezier")
