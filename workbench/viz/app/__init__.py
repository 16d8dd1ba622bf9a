"""The Workbench app: one ipywidgets app over a model and its builds (Graph, Build, Layers,
Performance, Accuracy and Sweep tabs). See `workbench.viz.app.main.Workbench`.

    >>> app = wb.Workbench("digits"); app.build(precision="fp32", batch_size=8); app
"""
from workbench.viz.app.history import BuildHistory, BuildRecord
from workbench.viz.app.main import TAB_TITLES, Workbench

__all__ = ["Workbench", "BuildHistory", "BuildRecord", "TAB_TITLES"]
