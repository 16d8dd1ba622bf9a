"""Inference Workbench: ONNX in, optimized engine out, every step explorable in Jupyter.

    import workbench as wb
    graph = wb.load("model.onnx")
    engine = wb.build(graph, wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8))
    outputs = engine.create_context().run({"input": x})
"""
__version__ = "0.1.0"

from workbench import errors  # noqa: E402
from workbench.builder import BuilderConfig, Profile  # noqa: E402
from workbench.ir import Graph, load  # noqa: E402
from workbench.passes import FusionReport, optimize  # noqa: E402
from workbench.runtime import Engine, ExecutionContext, build  # noqa: E402
from workbench.evaluate.compare import compare, compare_layers  # noqa: E402
from workbench.evaluate.sweep import sweep  # noqa: E402
from workbench.quant.graph_weights import is_2to4, prune_2to4, quantize_weights_int8  # noqa: E402
from workbench.viz import render_svg, view  # noqa: E402

__all__ = ["load", "optimize", "FusionReport", "view", "render_svg", "build", "BuilderConfig", "Profile", "Engine",
           "ExecutionContext", "Graph", "compare", "compare_layers", "sweep", "prune_2to4", "is_2to4", "quantize_weights_int8",
           "errors", "__version__"]

from workbench.viz.report import report  # noqa: E402
__all__ += ["report", "Workbench"]


def __getattr__(name):
    """`wb.Workbench` (the ipywidgets app) loads on first use: ipywidgets is an optional dependency."""
    if name == "Workbench":
        from workbench.viz.app import Workbench
        return Workbench
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def load_ipython_extension(ip):
    """`%load_ext workbench`: the magics and rich displays of workbench.viz.magics."""
    from workbench.viz.magics import load_ipython_extension as load
    load(ip)


from workbench.viz.reprs import install_if_ipython as _install_reprs  # noqa: E402
_install_reprs()   # rich displays when imported inside IPython (no-op in plain Python)
