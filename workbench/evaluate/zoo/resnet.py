"""ResNet-18/50 with the torchvision layout and names, random weights.

BatchNormalization is left as separate nodes on purpose: folding BN into the preceding
Conv and fusing Conv+Add+Relu are exactly what the graph optimizer has to prove it does.
"""
from __future__ import annotations

import onnx

from workbench.evaluate.zoo._common import FLOAT, Dim, GraphBuilder

__all__ = ["resnet18", "resnet50"]


def _basic(g: GraphBuilder, x: str, cin: int, planes: int, stride: int, p: str) -> tuple[str, int]:
    y = g.relu(g.batchnorm(g.conv(x, cin, planes, 3, f"{p}.conv1", stride=stride), planes, f"{p}.bn1"),
               f"{p}.relu1")
    y = g.batchnorm(g.conv(y, planes, planes, 3, f"{p}.conv2"), planes, f"{p}.bn2")
    return _merge(g, x, y, cin, planes, stride, p), planes


def _bottleneck(g: GraphBuilder, x: str, cin: int, planes: int, stride: int, p: str) -> tuple[str, int]:
    out = planes * 4
    y = g.relu(g.batchnorm(g.conv(x, cin, planes, 1, f"{p}.conv1"), planes, f"{p}.bn1"), f"{p}.relu1")
    y = g.relu(g.batchnorm(g.conv(y, planes, planes, 3, f"{p}.conv2", stride=stride), planes, f"{p}.bn2"),
               f"{p}.relu2")
    y = g.batchnorm(g.conv(y, planes, out, 1, f"{p}.conv3"), out, f"{p}.bn3")
    return _merge(g, x, y, cin, out, stride, p), out


def _merge(g: GraphBuilder, x: str, y: str, cin: int, cout: int, stride: int, p: str) -> str:
    """Residual Add then Relu; a 1x1 conv+BN projection when the shape changes."""
    if stride != 1 or cin != cout:
        x = g.batchnorm(g.conv(x, cin, cout, 1, f"{p}.downsample.0", stride=stride), cout,
                        f"{p}.downsample.1")
    return g.relu(g.add(y, x, f"{p}.add"), f"{p}.out_relu")


def _resnet(block, layers: list[int], name: str, seed: int, batch: Dim, num_classes: int,
            image_size: int) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    probe = min(image_size, 128)
    x = g.input("input", FLOAT, [batch, 3, image_size, image_size], probe_shape=[2, 3, probe, probe])
    x = g.relu(g.batchnorm(g.conv(x, 3, 64, 7, "conv1", stride=2, pad=3), 64, "bn1"), "relu")
    x = g.maxpool(x, "maxpool")
    cin = 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            x, cin = block(g, x, cin, planes, stride, f"layer{stage}.{i}")
    g.classifier_head(x, cin, num_classes)
    return g.model(name, [("logits", FLOAT, [batch, num_classes])],
                   doc=f"{name} (torchvision layout), random weights seed={seed}")


def resnet18(seed: int = 0, batch: Dim = "N", num_classes: int = 1000, image_size: int = 224) -> onnx.ModelProto:
    """ResNet-18: BasicBlocks [2, 2, 2, 2]; input "input" [batch,3,S,S], output "logits"."""
    return _resnet(_basic, [2, 2, 2, 2], "resnet18", seed, batch, num_classes, image_size)


def resnet50(seed: int = 0, batch: Dim = "N", num_classes: int = 1000, image_size: int = 224) -> onnx.ModelProto:
    """ResNet-50 (v1.5, stride on the 3x3): Bottlenecks [3, 4, 6, 3]."""
    return _resnet(_bottleneck, [3, 4, 6, 3], "resnet50", seed, batch, num_classes, image_size)
