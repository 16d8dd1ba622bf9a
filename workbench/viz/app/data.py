"""The data the app feeds a model: the digits splits for the bundled digits model, synthetic feeds
for any other model.

Why both: accuracy, calibration and the sweep need inputs. The bundled model has real labelled
data (test split for accuracy, train split for INT8 calibration, never the other way round). Any
other model gets seeded synthetic feeds built from its input specs, which are enough to time it and
to measure how far a precision moves its outputs from FP32, but never a real accuracy: the app
says so wherever it shows them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.errors import InputError
from workbench.ir import Graph

__all__ = ["ModelData", "model_data", "is_digits_model", "CALIBRATION_NONE"]

CALIBRATION_NONE = "none"
DIGITS_CALIBRATION = "digits train split (500 images)"
SYNTHETIC_CALIBRATION = "synthetic normal feeds (64 samples; timing demos only)"


@dataclasses.dataclass
class ModelData:
    """Inputs for one model. `labels` is None when the model has no labelled data."""
    description: str
    input_name: str
    images: np.ndarray                       # evaluation inputs for `input_name`, batch first
    labels: np.ndarray | None
    make_feeds: Callable[[np.ndarray], dict]  # evaluation rows -> a full feed dict
    calibration: dict[str, Callable[[], list[dict]]]

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def feeds(self, batch: int) -> dict:
        """A feed dict of `batch` rows (evaluation rows repeated when there are fewer)."""
        return self.make_feeds(self.images[np.arange(batch) % len(self.images)])

    def chunks(self, batch: int, min_batch: int | None = None) -> tuple[list[dict], np.ndarray | None]:
        """The evaluation set in batches of `batch`; a smaller last chunk only if it is at least
        `min_batch` (the profile's minimum), else those rows are left out. Also the labels of the
        rows the chunks hold."""
        n = len(self.images)
        min_batch = batch if min_batch is None else min_batch
        usable = n if n % batch >= min_batch or n % batch == 0 else n - n % batch
        rows = np.arange(max(usable, batch)) % n          # fewer rows than one batch: repeat them
        chunks = [self.make_feeds(self.images[rows[i:i + batch]]) for i in range(0, len(rows), batch)]
        return chunks, None if self.labels is None else self.labels[rows]


def is_digits_model(graph: Graph, source=None) -> bool:
    from workbench.evaluate.datasets import digits_model_path
    try:
        if source is not None and Path(source).resolve() == digits_model_path().resolve():
            return True
    except (TypeError, OSError, FileNotFoundError):
        pass
    shapes = [tuple(s.shape or ()) for s in graph.inputs]
    return graph.name == "digits_cnn" and len(shapes) == 1 and shapes[0][1:] == (1, 8, 8)


def model_data(graph: Graph, source=None, samples: int = 64, seed: int = 0) -> ModelData:
    if is_digits_model(graph, source):
        return _digits(graph)
    return _synthetic(graph, samples, seed)


def _digits(graph: Graph) -> ModelData:
    from workbench.evaluate.datasets import digits_test, digits_train
    images, labels = digits_test()
    name = graph.inputs[0].name

    def calibration() -> list[dict]:
        train, _ = digits_train(limit=500)
        return [{name: train[i:i + 50]} for i in range(0, len(train), 50)]
    return ModelData(f"digits test split ({len(labels)} labelled images)", name, images, labels,
                     lambda rows: {name: rows}, {DIGITS_CALIBRATION: calibration})


def _synthetic(graph: Graph, samples: int, seed: int) -> ModelData:
    """Seeded feeds from the input specs: floats ~ N(0, 1), integers all 1 (a valid token id and an
    all-ones attention mask), booleans True. Non-batch dims must be concrete."""
    rng = np.random.default_rng(seed)
    specs = list(graph.inputs)
    arrays = {}
    for spec in specs:
        dims = list(spec.shape or ())
        symbolic = [f"{d}" for d in dims[1:] if not isinstance(d, int)]
        if spec.shape is None or symbolic:
            raise InputError(f"input {spec.name!r} has shape {spec.shape} with symbolic dimensions "
                             f"{symbolic or 'unknown'} besides the batch; synthetic feeds need them concrete "
                             "(export the model with fixed shapes, or build it with wb.build(..., input_shapes=))")
        shape = [samples] + [int(d) for d in dims[1:]]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = np.ones(shape, dtype)
        else:
            arrays[spec.name] = np.ones(shape, dtype)
    first = specs[0].name
    rest = {name: array for name, array in arrays.items() if name != first}

    def make_feeds(rows: np.ndarray) -> dict:
        n = len(rows)
        return {first: rows, **{name: array[np.arange(n) % samples] for name, array in rest.items()}}

    def calibration() -> list[dict]:
        return [make_feeds(arrays[first][i:i + 16]) for i in range(0, samples, 16)]
    return ModelData(f"synthetic feeds ({samples} seeded samples, no labels)", first, arrays[first], None,
                     make_feeds, {SYNTHETIC_CALIBRATION: calibration})
