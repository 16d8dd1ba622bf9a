"""Model zoo: ONNX builders with seeded random weights for every model family the
workbench must handle (CNNs with BN, depthwise convs, inception branches, transformer
exports, plain MLPs), so tests and benchmarks need no downloads.

Every builder takes `seed: int = 0` and `batch: int | str = "N"` and returns a checker-valid
opset-17 / IR-8 float32 `onnx.ModelProto`. `ZOO` maps a name to its builder.
"""
from __future__ import annotations

from collections.abc import Callable

import onnx

from workbench.evaluate.zoo.bert import bert
from workbench.evaluate.zoo.googlenet import INCEPTION_BLOCKS, googlenet, inception_block
from workbench.evaluate.zoo.mlp import mlp
from workbench.evaluate.zoo.mobilenet import mobilenet_v2
from workbench.evaluate.zoo.resnet import resnet18, resnet50

__all__ = ["ZOO", "bert", "googlenet", "inception_block", "INCEPTION_BLOCKS", "mlp",
           "mobilenet_v2", "resnet18", "resnet50"]

ZOO: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "googlenet": googlenet,
    "inception_block": inception_block,
    "bert": bert,
    "mlp": mlp,
}
