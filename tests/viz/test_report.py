"""`wb.report`: one standalone HTML file; parsed back, it holds the graph, the tables with one row per
layer, PNG plots inline, and nothing that would reach a server or the network."""
from __future__ import annotations

import base64
import dataclasses
import re

import pytest

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.evaluate.datasets import digits_model_path, digits_test

from html_tables import Page


@pytest.fixture(scope="module")
def digits():
    graph = wb.load(digits_model_path())
    optimized, _ = wb.optimize(graph)
    fp32 = wb.build(optimized, wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8))
    fp16 = wb.build(optimized, wb.BuilderConfig(backend="cpu", precision="fp16", profile=(1, 4, 4)))
    return graph, fp32, fp16


@dataclasses.dataclass
class Record:                    # what a build history holds (duck-typed: .engine and .config)
    engine: wb.Engine
    config: wb.BuilderConfig


def check_standalone(page: Page, text: str) -> None:
    """No element loads anything from a URL: every src/href is inline (data:) or a page anchor."""
    for tag, attrs in page.elements:
        for key in ("src", "href", "xlink:href", "data", "action"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:", "#")), f"<{tag} {key}={value[:60]!r}> is not inline"
    assert not page.tags("script") and not page.tags("link") and not page.tags("iframe")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), "CSS loads from the network"


def pngs(page: Page) -> list[bytes]:
    images = []
    for attrs in page.tags("img"):
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        images.append(base64.b64decode(attrs["src"][len(prefix):], validate=True))
    return images


def test_engine_report_is_standalone_with_graph_tables_and_plots(digits, tmp_path):
    graph, fp32, _ = digits
    x, _ = digits_test(8)
    profile = fp32.create_context().profile({"input": x}, iters=2)
    path = wb.report(fp32, tmp_path / "report.html", graph=graph, profiles=profile)
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    check_standalone(page, text)
    svgs = page.tags("svg")
    assert len(svgs) == 1
    panels = [attrs["data-title"] for tag, attrs in page.elements if attrs.get("class") == "wb-panel"]
    assert panels == ["before", "after"]
    drawn = {attrs["data-name"] for tag, attrs in page.elements if attrs.get("class") == "wb-node"}
    assert {n.name for n in graph.nodes} | {layer.name for layer in fp32.layers} <= drawn
    assert page.column("wb-engine-layers", "layer") == [layer.name for layer in fp32.layers]
    assert page.column("wb-layer-profile", "layer") == profile["layer"].tolist()
    log_df = fp32.build_log
    assert page.column("wb-build-log", "layer") == log_df["layer"].tolist()
    images = pngs(page)
    assert len(images) == 2 and all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)


def test_history_report_compares_builds(digits, tmp_path):
    _, fp32, fp16 = digits
    history = [Record(fp32, wb.BuilderConfig(batch_size=8)), Record(fp16, wb.BuilderConfig(precision="fp16"))]
    x, _ = digits_test(8)
    path = wb.report(history, tmp_path / "history.html", feeds={"input": x})
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    check_standalone(page, text)
    builds = page.table("wb-builds")
    assert [row[1] for row in builds.rows] == ["fp32", "fp16"]
    layer_tables = [t for t in page.tables if "wb-engine-layers" in t.cls]
    assert [len(t.rows) for t in layer_tables] == [len(fp32.layers), len(fp16.layers)]
    # fp32 was profiled on the batch of 8; fp16 accepts at most 4, and the report says so
    assert len(page.table("wb-layer-profile").rows) == len(fp32.layers)
    assert "not profiled" in text and "outside the engine" in text
    assert len(page.tags("svg")) == 2
    # builds compared, fp32's measured time per layer, and each build's op mix; the fp16 build has no
    # times at all (not profiled, and its layers had one candidate each, so the builder timed none)
    assert fp16.build_log["times_ms"].map(len).sum() == 0
    assert [attrs["alt"] for attrs in page.tags("img")] == [
        "summed layer time per build", "time per layer", "layers per op and precision", "layers per op and precision"]
    assert len(pngs(page)) == 4


def test_list_of_engines(digits, tmp_path):
    _, fp32, fp16 = digits
    page = Page(wb.report([fp32, fp16], tmp_path / "list.html").read_text(encoding="utf-8"))
    assert [row[0] for row in page.table("wb-builds").rows] == ["build 1: fp32 batch 8 on cpu",
                                                               "build 2: fp16 batch 1..4 on cpu"]


@pytest.mark.parametrize("source, message", [
    ("model.onnx", "expected an Engine"),
    ([], "history is empty"),
    ([object()], "item 1 of the history is a object"),
])
def test_bad_sources_are_named(source, message, tmp_path):
    with pytest.raises(WorkbenchError, match=message):
        wb.report(source, tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()


def test_profile_count_must_match_builds(digits, tmp_path):
    _, fp32, fp16 = digits
    with pytest.raises(WorkbenchError, match="one profile DataFrame given for 2 builds"):
        wb.report([fp32, fp16], tmp_path / "x.html", profiles=fp32.build_log)
