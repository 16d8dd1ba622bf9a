"""The data shipped with the workbench: scikit-learn's 8x8 digits split the way the bundled
CNN was trained (see `workbench.evaluate.train_digits`), so accuracy, calibration and
precision experiments run offline and give the same numbers on every machine.

Images are float32 [n,1,8,8] raw pixel values 0..16 (the model normalises them itself);
labels are int64 [n].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR", "digits_test", "digits_train", "digits_model_path", "digits_metadata"]

DATA_DIR = Path(__file__).resolve().parent / "data"
_REGENERATE = "regenerate it with `python -m workbench.evaluate.train_digits`"


def _path(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"bundled data file {path} is missing; {_REGENERATE}")
    return path


def _load(name: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_path(name), allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def digits_test(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out 20% (360 images), the split the recorded test accuracy is measured on."""
    return _load("digits_test.npz", limit)


def digits_train(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training 80% (1437 images); `limit=500` gives the INT8 calibration subset."""
    return _load("digits_train.npz", limit)


def digits_model_path() -> Path:
    """Path of the trained CNN: input "input" [N,1,8,8] raw pixels, output "logits" [N,10]."""
    return _path("digits_cnn.onnx")


def digits_metadata() -> dict:
    """What train_digits recorded: test_accuracy, sample counts, seed, epochs."""
    import json
    return json.loads(_path("digits_cnn.json").read_text())
