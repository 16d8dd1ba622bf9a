"""`view`: explore a graph (or before / after optimization) in Netron, embedded in the notebook.

Why Netron: it is the ONNX viewer people already know, it shows every attribute and weight, and
our fused ops live in the "workbench" domain so an optimized graph is still a file it opens.
What it cannot do is colour what the optimizer did, so the embedded view carries a legend of
each fused node and the original nodes it replaced (`render_svg` draws that into the picture).

Each graph gets its own Netron server on 127.0.0.1 and a free port, serving a temporary copy of
the model; `stop()` (or leaving the `with` block, or garbage collection) shuts them down and
frees the ports. The iframe URLs point at 127.0.0.1, so they work where the browser runs on the
same machine as the kernel; on a remote kernel forward the ports or use `render_svg`.

Example:
    >>> with wb.view(graph, optimized) as v:
    ...     v            # shows both side by side in Jupyter
"""
from __future__ import annotations

import contextlib
import dataclasses
import html
import logging
import os
import shutil
import socket
import tempfile
import time
import weakref
from typing import Any

import onnx

from workbench.errors import ViewError

__all__ = ["view", "NetronView", "ServedModel", "ViewError"]
log = logging.getLogger(__name__)

HOST = "127.0.0.1"          # loopback only: a model server must never face the network


@dataclasses.dataclass(frozen=True)
class ServedModel:
    title: str
    url: str                 # the Netron page
    model_url: str           # the ONNX file it loads
    port: int
    path: str
    node_count: int


def view(graph: Any, optimized: Any = None, *, port: int | None = None, height: int = 600) -> "NetronView":
    """Serve `graph` (and `optimized`) with Netron on 127.0.0.1 and return an embeddable view.

    Args:
        graph: a `Graph` (or anything `wb.load` takes).
        optimized: the optimized graph, shown to the right of the original ("before" / "after").
        port: port of the first server (the second uses port + 1); default: free ports.
        height: iframe height in px.

    Example:
        >>> v = wb.view(graph, optimized)
        >>> v.urls
        ['http://127.0.0.1:40213', 'http://127.0.0.1:40215']
        >>> v.stop()
    """
    try:
        import netron
    except ImportError as error:
        raise ViewError("Netron is not installed: `pip install 'inference-workbench[notebook]'` "
                        "(or `pip install netron`); for a static picture that needs no server use "
                        "wb.render_svg(graph, optimized)") from error
    from workbench.viz.svg import _as_graph          # viz may import the rest of the workbench

    graphs = [_as_graph(graph)] + ([_as_graph(optimized)] if optimized is not None else [])
    titles = ["before", "after"] if optimized is not None else [graphs[0].name]
    folder = tempfile.mkdtemp(prefix="workbench-netron-")
    addresses: list[tuple[str, int]] = []
    served: list[ServedModel] = []
    try:
        for k, (g, title) in enumerate(zip(graphs, titles)):
            name = f"{title}.onnx" if optimized is not None else "model.onnx"
            path = os.path.join(folder, name)
            onnx.save(g.to_proto(), path)
            address = _start(netron, path, None if port is None else port + k)
            addresses.append(address)
            url = f"http://{address[0]}:{address[1]}"
            served.append(ServedModel(title, url, f"{url}/data/{name}", address[1], path, len(g.nodes)))
    except BaseException:
        _shutdown(addresses, folder)
        raise
    legend = _fused_legend(graphs[-1])
    log.info("netron: serving %s", ", ".join(s.url for s in served))
    return NetronView(served, legend, height, addresses, folder)


def _start(netron, path: str, port: int | None) -> tuple[str, int]:
    tries = 1 if port is not None else 3            # a free port can be taken before netron binds it
    for attempt in range(tries):
        chosen = port if port is not None else _free_port()
        if netron.status((HOST, chosen)):          # netron.start would silently stop that server
            raise ViewError(f"port {chosen} is already serving another Netron view; stop() it or pick "
                            "another port (port=None picks a free one)")
        try:
            with _root_logging_untouched():
                address = netron.start(path, address=(HOST, chosen), browse=False)
            return (str(address[0]), int(address[1]))
        except OSError as error:
            if attempt == tries - 1:
                raise ViewError(f"cannot start Netron on {HOST}:{chosen}: {error}") from error
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _root_logging_untouched():
    """netron.serve calls logging.basicConfig when the root logger has no handler; keep it ours."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeHandler(guard)


def _shutdown(addresses: list[tuple[str, int]], folder: str) -> None:
    try:
        import netron
    except ImportError:                 # interpreter shutting down
        netron = None
    if netron is not None:
        for address in addresses:
            netron.stop(address)
        deadline = time.monotonic() + 3.0
        while any(netron.status(a) for a in addresses) and time.monotonic() < deadline:
            time.sleep(0.02)
    shutil.rmtree(folder, ignore_errors=True)


def _fused_legend(graph) -> list[tuple[str, str, list[str]]]:
    from workbench.ir import source_nodes_of as sources_of
    return [(n.name, n.op_type, sources_of(n)) for n in graph.nodes if "source_nodes" in n.attributes]


class NetronView:
    """Running Netron servers for one or two graphs; shown in Jupyter as side-by-side iframes.

    `.urls` are the pages, `.stop()` shuts every server down (safe to call twice); it is also a
    context manager and stops itself when garbage-collected.
    """

    def __init__(self, served: list[ServedModel], legend: list[tuple[str, str, list[str]]], height: int,
                 addresses: list[tuple[str, int]], folder: str):
        self.served = served
        self.legend = legend
        self.height = height
        self._finalizer = weakref.finalize(self, _shutdown, list(addresses), folder)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.served]

    @property
    def running(self) -> bool:
        return self._finalizer.alive

    def stop(self) -> None:
        """Stop every server of this view and free its ports; a second call does nothing."""
        if self._finalizer.alive:
            log.info("netron: stopping %s", ", ".join(self.urls))
        self._finalizer()

    def __enter__(self) -> "NetronView":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _repr_html_(self) -> str:
        if not self.running:
            return f"<p><i>Netron view stopped</i> ({html.escape(', '.join(self.urls))})</p>"
        panes = []
        for s in self.served:
            panes.append(
                '<div style="flex:1 1 0;min-width:0">'
                f'<div style="font-weight:bold;margin:2px 0 4px">{html.escape(s.title)} '
                f'<span style="font-weight:normal;color:#666">\u00b7 {s.node_count} nodes \u00b7 '
                f'<a href="{html.escape(s.url)}" target="_blank">{html.escape(s.url)}</a></span></div>'
                f'<iframe src="{html.escape(s.url)}" width="100%" height="{int(self.height)}" '
                'style="border:1px solid #ccc" loading="lazy"></iframe></div>')
        out = ['<div style="display:flex;gap:12px;align-items:flex-start">', *panes, "</div>"]
        if self.legend:
            out.append('<details open style="margin-top:6px"><summary><b>fused node \u2190 original nodes'
                       f' ({len(self.legend)})</b> <span style="color:#666">(Netron cannot colour them; '
                       'wb.render_svg can)</span></summary><ul style="margin:4px 0">')
            for name, op, sources in self.legend:
                out.append(f"<li><code>{html.escape(name)}</code> ({html.escape(op)}) \u2190 "
                           f"{html.escape(', '.join(sources))}</li>")
            out.append("</ul></details>")
        return "".join(out)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        pages = ", ".join(f"{s.title}={s.url}" for s in self.served)
        return f"<NetronView {pages} ({state})>"
