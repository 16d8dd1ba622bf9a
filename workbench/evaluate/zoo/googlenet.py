"""GoogLeNet (Inception v1, Caffe bvlc_googlenet layout and names), random weights.

The inception block is TensorRT's classic fusion example: four branches off one input,
three 1x1 convs that can merge horizontally into one wide conv, conv+bias+Relu chains to
fuse vertically, and a Concat that can be elided by writing branches in place.
`inception_block` builds one block alone so those passes can be studied in isolation.
"""
from __future__ import annotations

import numpy as np
import onnx

from workbench.evaluate.zoo._common import FLOAT, Dim, GraphBuilder

__all__ = ["googlenet", "inception_block", "INCEPTION_BLOCKS"]

# name: (in_ch, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj), from the paper's Table 1
INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}
_POOL_AFTER = {"3b": "pool3/3x3_s2", "4e": "pool4/3x3_s2"}


def _conv_relu(g: GraphBuilder, x: str, cin: int, cout: int, k: int, name: str, relu: str,
               stride: int = 1) -> str:
    return g.relu(g.conv(x, cin, cout, k, name, stride=stride, bias=True, lsuv=True), relu)


def _inception(g: GraphBuilder, x: str, block: str, output: str | None = None) -> tuple[str, int]:
    cin, c1, r3, c3, r5, c5, pp = INCEPTION_BLOCKS[block]
    p = f"inception_{block}"
    b1 = _conv_relu(g, x, cin, c1, 1, f"{p}/1x1", f"{p}/relu_1x1")
    b2 = _conv_relu(g, x, cin, r3, 1, f"{p}/3x3_reduce", f"{p}/relu_3x3_reduce")
    b2 = _conv_relu(g, b2, r3, c3, 3, f"{p}/3x3", f"{p}/relu_3x3")
    b3 = _conv_relu(g, x, cin, r5, 1, f"{p}/5x5_reduce", f"{p}/relu_5x5_reduce")
    b3 = _conv_relu(g, b3, r5, c5, 5, f"{p}/5x5", f"{p}/relu_5x5")
    b4 = g.maxpool(x, f"{p}/pool", k=3, stride=1, pad=1)
    b4 = _conv_relu(g, b4, cin, pp, 1, f"{p}/pool_proj", f"{p}/relu_pool_proj")
    pv = g._probe(b1, b2, b3, b4)
    out = g.node("Concat", [b1, b2, b3, b4], f"{p}/output", outputs=[output or f"{p}/output"],
                 value=np.concatenate(pv, axis=1) if pv else None, axis=1)
    return out, c1 + c3 + c5 + pp


def googlenet(seed: int = 0, batch: Dim = "N", num_classes: int = 1000, image_size: int = 224) -> onnx.ModelProto:
    """GoogLeNet: input "input" [batch,3,S,S], output "logits"; 9 inception blocks 3a..5b."""
    g = GraphBuilder(seed)
    probe = min(image_size, 128)
    x = g.input("input", FLOAT, [batch, 3, image_size, image_size], probe_shape=[2, 3, probe, probe])
    x = _conv_relu(g, x, 3, 64, 7, "conv1/7x7_s2", "conv1/relu_7x7", stride=2)
    x = g.maxpool(x, "pool1/3x3_s2")
    x = _conv_relu(g, x, 64, 64, 1, "conv2/3x3_reduce", "conv2/relu_3x3_reduce")
    x = _conv_relu(g, x, 64, 192, 3, "conv2/3x3", "conv2/relu_3x3")
    x = g.maxpool(x, "pool2/3x3_s2")
    channels = 192
    for block in INCEPTION_BLOCKS:
        x, channels = _inception(g, x, block)
        if block in _POOL_AFTER:
            x = g.maxpool(x, _POOL_AFTER[block])
    g.classifier_head(x, channels, num_classes, pool="pool5/7x7_s1", flatten="pool5/flatten",
                      fc="loss3/classifier")
    return g.model("googlenet", [("logits", FLOAT, [batch, num_classes])],
                   doc=f"GoogLeNet / Inception v1, random weights seed={seed}")


def inception_block(seed: int = 0, batch: Dim = "N", block: str = "3a", size: int = 28) -> onnx.ModelProto:
    """One inception block as a model: input "input" [batch,in_ch,size,size], output "output"."""
    if block not in INCEPTION_BLOCKS:
        raise ValueError(f"unknown inception block {block!r}; choose from {sorted(INCEPTION_BLOCKS)}")
    g = GraphBuilder(seed)
    cin = INCEPTION_BLOCKS[block][0]
    x = g.input("input", FLOAT, [batch, cin, size, size], probe_shape=[2, cin, size, size])
    _, channels = _inception(g, x, block, output="output")
    return g.model(f"inception_{block}", [("output", FLOAT, [batch, channels, size, size])],
                   doc=f"GoogLeNet inception_{block} block alone, random weights seed={seed}")
