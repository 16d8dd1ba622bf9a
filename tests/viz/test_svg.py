"""render_svg: valid XML, one box per graph node, fusions traceable, focus, and the resnet50 budget."""
from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET

import pytest

import workbench as wb
from workbench.evaluate import zoo
from workbench.ir import source_nodes_of as sources_of
from workbench.viz import SvgView, ViewError, render_svg
from workbench.viz.layout import layered_layout

SVG = "{http://www.w3.org/2000/svg}"


def panels(view: SvgView) -> dict[str, ET.Element]:
    root = ET.fromstring(view.svg)
    assert root.tag == f"{SVG}svg"
    return {p.get("data-title"): p for p in root.iter(f"{SVG}g") if p.get("class") == "wb-panel"}


def boxes(panel: ET.Element, kind: str = "wb-node") -> list[ET.Element]:
    return [g for g in panel.iter(f"{SVG}g") if g.get("class") == kind]


def names(panel: ET.Element) -> set[str]:
    return {g.get("data-name") for g in boxes(panel)}


@pytest.fixture(scope="module")
def inception():
    graph = wb.load(zoo.inception_block(seed=0))
    optimized, _ = wb.optimize(graph)
    return graph, optimized


@pytest.fixture(scope="module")
def googlenet():
    graph = wb.load(zoo.googlenet(seed=0))
    optimized, _ = wb.optimize(graph)
    return graph, optimized


def test_before_after_one_box_per_node(inception):
    graph, optimized = inception
    view = render_svg(graph, optimized, engine="python")
    drawn = panels(view)
    assert list(drawn) == ["before", "after"]
    for title, g in zip(drawn, inception):
        assert len(boxes(drawn[title])) == len(g.nodes)
        assert names(drawn[title]) == {n.name for n in g.nodes}
        assert len(boxes(drawn[title], "wb-io")) == len(g.inputs) + len(g.outputs)
    assert view.counts == [len(graph.nodes), len(optimized.nodes)]
    assert view.engine == "python" and view._repr_svg_() == view.svg


def test_fused_nodes_show_their_originals(inception):
    graph, optimized = inception
    after = panels(render_svg(graph, optimized, engine="python"))["after"]
    fused = {n.name: list(n.attributes["source_nodes"].value) for n in optimized.nodes
             if n.domain == "workbench"}
    assert fused, "the inception block should have at least one fused node"
    shown = {g.get("data-name"): g for g in boxes(after) if g.get("data-op-class") == "fused"}
    assert set(shown) == set(fused)
    for name, sources in fused.items():
        title = shown[name].find(f"{SVG}title").text
        assert all(source in title for source in sources)
        assert shown[name].get("data-fused-from").split(",") == sources


def test_legend_and_initializers(inception):
    graph, optimized = inception
    view = render_svg(graph, optimized, engine="python")
    root = ET.fromstring(view.svg)
    legend = "\n".join(t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "wb-legend-fused")
    for node in optimized.nodes:
        if node.domain == "workbench":
            assert node.name[:40] in legend
    drawn = {g.get("data-name") for g in root.iter(f"{SVG}g") if g.get("data-name")}
    assert not drawn & set(graph.initializers)            # weights are not nodes ...
    before = panels(view)["before"]
    conv = next(g for g in boxes(before) if g.get("data-name") == "inception_3a/1x1")
    assert "weight inception_3a/1x1.weight: float32[64\u00d7192\u00d71\u00d71]" in conv.find(f"{SVG}title").text


def test_text_is_escaped(tiny_model):
    tiny_model.graph.node[0].name = "conv<&>\"'"
    view = render_svg(wb.load(tiny_model), engine="python")
    (panel,) = panels(view).values()
    assert "conv<&>\"'" in names(panel)


def test_focus_regex_selects_block_plus_radius(googlenet):
    graph, optimized = googlenet
    block = {n.name for n in graph.nodes if n.name.startswith("inception_3a/")}
    assert len(block) == 14
    view = render_svg(graph, optimized, focus="inception_3a.*", radius=0, engine="python")
    drawn = panels(view)
    assert names(drawn["before"]) == block
    after = [n for n in optimized.nodes if n.name in names(drawn["after"])]
    assert after and all(any(s.startswith("inception_3a/") for s in sources_of(n))
                         for n in after)
    one = panels(render_svg(graph, focus="inception_3a.*", radius=1, engine="python"))[graph.name]
    assert names(one) == block | {"pool2/3x3_s2", "inception_3b/1x1", "inception_3b/3x3_reduce",
                                  "inception_3b/5x5_reduce", "inception_3b/pool"}


def test_focus_exact_name_and_no_match(googlenet):
    graph, _ = googlenet
    drawn = panels(render_svg(graph, focus="pool2/3x3_s2", radius=1, engine="python"))[graph.name]
    assert names(drawn) == {"conv2/relu_3x3", "pool2/3x3_s2", "inception_3a/1x1", "inception_3a/3x3_reduce",
                            "inception_3a/5x5_reduce", "inception_3a/pool"}
    with pytest.raises(ViewError, match="matches no node"):
        render_svg(graph, focus="no_such_block.*")


def test_resnet50_before_after_under_10s():
    graph = wb.load(zoo.resnet50(seed=0))
    optimized, _ = wb.optimize(graph)
    started = time.perf_counter()
    view = render_svg(graph, optimized, engine="python")
    seconds = time.perf_counter() - started
    assert seconds < 10.0, f"resnet50 before/after took {seconds:.1f} s"
    drawn = panels(view)
    assert [len(boxes(p)) for p in drawn.values()] == [len(graph.nodes), len(optimized.nodes)]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")
def test_graphviz_engine(inception, tmp_path):
    graph, optimized = inception
    view = render_svg(graph, optimized, engine="dot")
    assert view.engine == "dot"
    drawn = panels(view)
    assert [len(boxes(p)) for p in drawn.values()] == [len(graph.nodes), len(optimized.nodes)]
    path = view.save(tmp_path / "inception.svg")
    ET.parse(path)


def test_bad_engine(inception):
    with pytest.raises(ViewError, match="engine"):
        render_svg(inception[0], engine="neato")


def test_layered_layout_is_layered_and_overlap_free():
    sizes = {k: (60.0, 30.0) for k in "abcdef"}
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d"), ("d", "e"), ("f", "e")]
    lay = layered_layout(sizes, edges)
    for u, v in edges:
        assert lay.nodes[v][1] > lay.nodes[u][1]
    assert lay.nodes["f"][1] == lay.nodes["d"][1]            # a source sits just above its consumer
    assert abs(lay.nodes["b"][0] - lay.nodes["c"][0]) >= 60.0
    assert len(lay.edges) == len(edges) and all(len(r) >= 2 for r in lay.edges)
    assert len(lay.edges[edges.index(("a", "d"))]) == 4      # routed through one dummy
