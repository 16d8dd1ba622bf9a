"""view: Netron served on loopback, embeddable, and stopped for good (ports freed, stop idempotent)."""
from __future__ import annotations

import importlib.util
import socket
import sys
import urllib.parse
import urllib.request

import onnx
import pytest

import workbench as wb
from workbench.evaluate import zoo
from workbench.viz import NetronView, ViewError, view

needs_netron = pytest.mark.skipif(importlib.util.find_spec("netron") is None,
                                  reason="netron is not installed (pip install 'inference-workbench[notebook]')")
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never through a proxy


def fetch(url: str) -> tuple[int, bytes]:
    assert urllib.parse.urlparse(url).hostname == "127.0.0.1"
    with LOCAL.open(url, timeout=5) as response:
        return response.status, response.read()


def refused(url: str) -> bool:
    parts = urllib.parse.urlparse(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture(scope="module")
def inception():
    graph = wb.load(zoo.inception_block(seed=0))
    optimized, _ = wb.optimize(graph)
    return graph, optimized


@needs_netron
def test_serves_page_and_model_then_stops(inception):
    graph, _ = inception
    v = view(graph, height=420)
    try:
        (url,) = v.urls
        assert url.startswith("http://127.0.0.1:")
        status, page = fetch(url)
        assert status == 200 and b"netron" in page.lower()
        status, data = fetch(v.served[0].model_url)
        assert status == 200
        assert len(onnx.load_from_string(data).graph.node) == len(graph.nodes)
        html = v._repr_html_()
        assert f'<iframe src="{url}"' in html and 'height="420"' in html
        assert "running" in repr(v)
    finally:
        v.stop()
    assert refused(url)
    v.stop()                                  # idempotent
    assert "stopped" in repr(v) and "iframe" not in v._repr_html_()


@needs_netron
def test_before_after_two_servers_and_legend(inception):
    graph, optimized = inception
    with view(graph, optimized) as v:
        assert isinstance(v, NetronView)
        ports = [urllib.parse.urlparse(u).port for u in v.urls]
        assert len(set(ports)) == 2
        assert all(fetch(u)[0] == 200 for u in v.urls)
        html = v._repr_html_()
        assert html.count("<iframe") == 2 and "before" in html and "after" in html
        fused = [n for n in optimized.nodes if n.domain == "workbench"]
        assert fused
        for node in fused:
            assert node.name in html
            for source in node.attributes["source_nodes"].value:
                assert source in html
    assert all(refused(u) for u in v.urls)


def test_missing_netron_says_what_to_do(inception, monkeypatch):
    monkeypatch.setitem(sys.modules, "netron", None)         # makes `import netron` fail
    with pytest.raises(ViewError, match="render_svg"):
        view(inception[0])
