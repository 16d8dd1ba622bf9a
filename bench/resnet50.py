"""ResNet-50: our engine vs PyTorch eager vs torch.compile, same weights, same inputs, one process.

The engine is built from the zoo's ONNX graph; torch runs a module holding the same initializers
(channels_last, `.half()` for fp16, TF32 only for --precision tf32). The JSON record per (batch,
precision) has build / compile seconds, latency (CUDA events, median), throughput, the output's
relative L2 difference from torch float32 eager, the memory arena, the top of our per-layer
profile, the ratios and the issue's acceptance targets. On the H100, one batch size per run
(max-autotune takes ~4 minutes per batch size):

    python3 bench/resnet50.py --batch 256 --precision fp16 --out $OUT/resnet50_b256_fp16.json
    python3 bench/resnet50.py --backend cpu --batch 1 --image-size 64 --skip-compile   # a check on any CPU
"""
from __future__ import annotations

import argparse

import numpy as np

from _harness import add_common_args, run_benchmark

TARGETS = [("fp16", 256, "vs_compile", 1.0, "ResNet-50 fp16 b256: throughput >= 1.0x torch.compile max-autotune"),
           ("fp16", 1, "vs_compile", 1.0, "ResNet-50 fp16 b1: latency <= 1.0x torch.compile"),
           ("fp32", 32, "vs_eager", 1.2, "ResNet-50 fp32 b32: >= 1.2x PyTorch eager")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, batch="256", precision="fp16")
    parser.add_argument("--image-size", type=int, default=224, help="smaller for quick checks (>= 32)")
    parser.add_argument("--torchvision", action="store_true",
                        help="load the weights into torchvision.models.resnet50 instead of our mirror module")
    args = parser.parse_args(argv)
    size = args.image_size

    def make_model():
        from workbench.evaluate.zoo import resnet50
        return resnet50(seed=args.seed, image_size=size)

    def make_feeds(batch, rng):
        return {"input": rng.standard_normal((batch, 3, size, size), dtype=np.float32)}

    def make_torch(model):
        from _torch_reference import resnet_from_onnx
        return resnet_from_onnx(model, use_torchvision=args.torchvision)

    return run_benchmark(args, model_name="resnet50", make_model=make_model, make_feeds=make_feeds,
                         make_torch=make_torch, channels_last=True, targets=TARGETS,
                         config={"image_size": size, "torch_module": "torchvision" if args.torchvision else "mirror"})


if __name__ == "__main__":
    main()
