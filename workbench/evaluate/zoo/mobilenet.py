"""MobileNetV2 (torchvision layout), random weights.

It exercises what ResNets do not: depthwise convolutions (group == channels), ReLU6 as
Clip with initializer bounds, and linear bottlenecks whose residual Add has no Relu.
"""
from __future__ import annotations

import onnx

from workbench.evaluate.zoo._common import FLOAT, Dim, GraphBuilder

__all__ = ["mobilenet_v2"]

# expansion t, output channels c, repeats n, first stride s (torchvision's table)
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn(g: GraphBuilder, x: str, cin: int, cout: int, k: int, p: str, *, stride: int = 1,
             group: int = 1, act: bool = True) -> str:
    y = g.batchnorm(g.conv(x, cin, cout, k, f"{p}_conv", stride=stride, group=group), cout, f"{p}_bn")
    return g.relu6(y, f"{p}_relu6") if act else y


def _inverted_residual(g: GraphBuilder, x: str, cin: int, cout: int, stride: int, t: int, p: str) -> str:
    hidden = int(round(cin * t))
    y = _conv_bn(g, x, cin, hidden, 1, f"{p}.expand") if t != 1 else x
    y = _conv_bn(g, y, hidden, hidden, 3, f"{p}.dw", stride=stride, group=hidden)
    y = _conv_bn(g, y, hidden, cout, 1, f"{p}.project", act=False)
    if stride == 1 and cin == cout:
        y = g.add(x, y, f"{p}.add")
    return y


def mobilenet_v2(seed: int = 0, batch: Dim = "N", num_classes: int = 1000, image_size: int = 224,
                 width_mult: float = 1.0) -> onnx.ModelProto:
    """MobileNetV2: input "input" [batch,3,S,S], output "logits" [batch,num_classes]."""
    g = GraphBuilder(seed)
    probe = min(image_size, 128)
    x = g.input("input", FLOAT, [batch, 3, image_size, image_size], probe_shape=[2, 3, probe, probe])
    cin = _divisible(32 * width_mult)
    last = _divisible(1280 * max(1.0, width_mult))
    x = _conv_bn(g, x, 3, cin, 3, "features.0", stride=2)
    idx = 1
    for t, c, n, s in _SETTINGS:
        cout = _divisible(c * width_mult)
        for i in range(n):
            x = _inverted_residual(g, x, cin, cout, s if i == 0 else 1, t, f"features.{idx}")
            cin, idx = cout, idx + 1
    x = _conv_bn(g, x, cin, last, 1, f"features.{idx}")
    g.classifier_head(x, last, num_classes, fc="classifier")
    return g.model("mobilenet_v2", [("logits", FLOAT, [batch, num_classes])],
                   doc=f"MobileNetV2 (torchvision layout), random weights seed={seed}")
