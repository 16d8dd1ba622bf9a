"""Rich displays: a real IPython shell formats Graph, FusionReport, Engine, Profile and the compare /
profile DataFrames as HTML with the expected parts, and keeps the plain-text reprs for terminals."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.viz import reprs

from html_tables import Page

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    assert reprs.install(shell)
    return shell


@pytest.fixture(scope="module")
def digits():
    graph = wb.load(digits_model_path())
    optimized, report = wb.optimize(graph)
    engine = wb.build(optimized, wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8))
    return graph, optimized, report, engine


def formatted(ip, obj) -> tuple[str, str]:
    data, _ = ip.display_formatter.format(obj)
    return data.get("text/html", ""), data["text/plain"]


def test_graph_shows_svg_and_facts(ip, digits):
    graph = digits[0]
    html, text = formatted(ip, graph)
    assert text == repr(graph) and text.startswith("<Graph 'digits_cnn': 12 nodes")
    assert "<svg" in html and 'class="wb-panel"' in html
    for node in graph.nodes:                         # every node drawn, by name
        assert f'data-name="{node.name}"' in html
    assert "input: float32[Nx1x8x8]" in html


def test_large_graph_lists_op_counts_instead_of_drawing(ip, digits, monkeypatch):
    monkeypatch.setattr(reprs, "MAX_SVG_NODES", 5)
    html, _ = formatted(ip, digits[0])
    assert "<svg" not in html
    counts = Page(html).table("wb-op-counts")
    assert {row[0]: int(row[1]) for row in counts.rows} == digits[0].op_counts()


def test_fusion_report_lists_each_rewrite(ip, digits):
    report = digits[2]
    html, text = formatted(ip, report)
    assert text == repr(report)
    page = Page(html)
    rewrites = page.table("wb-rewrites")
    assert len(rewrites.rows) == len(report.rewrites) == 4
    assert [row[2] for row in rewrites.rows] == [", ".join(r.new_ops) for r in report.rewrites]
    assert "12 \u2192 8" in html
    passes = page.column("wb-passes", "name")
    assert passes == [p.name for p in report.passes if p.rewrites]


def test_engine_table_has_one_row_per_layer(ip, digits):
    engine = digits[3]
    html, text = formatted(ip, engine)
    assert text == repr(engine)
    page = Page(html)
    table = page.table("wb-engine-layers")
    assert len(table.rows) == len(engine.layers) == 8
    assert page.column("wb-engine-layers", "layer") == [layer.name for layer in engine.layers]
    assert page.column("wb-engine-layers", "tactic") == [layer.tactic for layer in engine.layers]
    fused = dict(zip(page.column("wb-engine-layers", "layer"), page.column("wb-engine-layers", "fused from")))
    assert fused["conv1+relu1"] == "conv1, relu1"
    shapes = dict(zip(page.column("wb-engine-layers", "layer"), page.column("wb-engine-layers", "output_shapes")))
    assert shapes["fc2"] == "8\u00d710"
    assert "backend</b> cpu" in html and "precision</b> fp32" in html


def test_batch_profile(ip):
    profile = wb.Profile(1, 8, 32)
    html, text = formatted(ip, profile)
    assert text == "Profile(min=1, opt=8, max=32)"
    assert Page(html).table("wb-profile").rows == [["1", "8", "32"]]


def test_compare_layers_marks_the_first_jump(ip, digits):
    _, optimized, _, fp32 = digits
    fp16 = wb.build(optimized, wb.BuilderConfig(backend="cpu", precision="fp16", batch_size=8))
    images, _ = digits_test(8)
    df = wb.compare_layers(fp16, fp32, {"input": images})
    html, _ = formatted(ip, df)
    page = Page(html)
    assert len(page.table("wb-compare-layers").rows) == len(df)
    assert html.count('class="wb-hot"') == int(df["first_jump"].sum())
    ends = wb.compare(fp16, fp32, {"input": images})
    html, _ = formatted(ip, ends)
    assert Page(html).column("wb-compare", "output") == ["logits"]


def test_other_dataframes_keep_pandas_display(ip):
    df = pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5]})
    html, _ = formatted(ip, df)
    assert html == df._repr_html_()


def test_layer_profile_frame_shows_time_bars(ip):
    df = pd.DataFrame({"layer": ["a", "b"], "op": ["Conv", "Relu"], "tactic": ["numpy", "numpy"],
                       "precision": ["fp32", "fp32"], "shapes": ["", ""], "time_ms": [3.0, 1.0],
                       "percent": [75.0, 25.0]})
    html, _ = formatted(ip, df)
    assert Page(html).column("wb-layer-profile", "layer") == ["a", "b"]
    assert html.count('class="wb-bar"') == 2 and "4.0000 ms" in html


def test_import_installs_displays_only_inside_ipython():
    """`import workbench` in plain Python installs nothing (and does not fail); imported inside an
    IPython shell, it registers the HTML formatters (a fresh interpreter: this one already has a shell)."""
    code = ("import importlib\n"
            "import workbench as wb\n"
            "from workbench.viz import reprs\n"
            "print(reprs.install())\n"
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "ip = InteractiveShell.instance()\n"
            "f = ip.display_formatter.formatters['text/html']\n"
            "print(wb.Engine in f.type_printers)\n"
            "importlib.reload(wb)\n"
            "print(f.lookup_by_type(wb.Engine).__name__, f.lookup_by_type(wb.Graph).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "engine_html", "graph_html"]
