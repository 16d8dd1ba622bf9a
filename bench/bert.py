"""BERT-base: our engine vs PyTorch eager vs torch.compile, same weights, same inputs, one process.

The engine is built from the zoo's BERT-base ONNX graph (12 layers, hidden 768, 12 heads, sequence
128); torch runs a HuggingFace-shaped module with the same initializers (attention through
torch's scaled_dot_product_attention by default, as HF does; `--attention math` spells it out as
the graph does). Inputs: random token ids and an attention mask with padded tails of different
lengths. The JSON record is the one bench/resnet50.py writes. On the H100:

    python3 bench/bert.py --batch 1,32 --precision fp16 --out $OUT/bert_fp16.json
    python3 bench/bert.py --backend cpu --batch 1 --layers 2 --seq 32 --skip-compile   # a check on any CPU
"""
from __future__ import annotations

import argparse

import numpy as np

from _harness import add_common_args, run_benchmark

TARGETS = [("fp16", 32, "vs_compile", 1.0, "BERT-base fp16 b32: >= 1.0x torch.compile")]
VOCAB = 30522


def attention_mask(batch: int, seq: int) -> np.ndarray:
    """Ones, with the tail of every other sequence padded (lengths seq, 3/4 seq, seq, 1/2 seq, ...)."""
    mask = np.ones((batch, seq), np.int64)
    for b in range(1, batch, 2):
        mask[b, seq - seq // (4 if b % 4 == 1 else 2):] = 0
    return mask


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, batch="32", precision="fp16")
    parser.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12; fewer for checks)")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "math"],
                        help="torch attention: fused scaled_dot_product_attention or the graph's ops")
    args = parser.parse_args(argv)

    def make_model():
        from workbench.evaluate.zoo.bert import bert_base
        return bert_base(seed=args.seed, seq_len=args.seq, layers=args.layers)

    def make_feeds(batch, rng):
        return {"input_ids": rng.integers(0, VOCAB, (batch, args.seq), dtype=np.int64),
                "attention_mask": attention_mask(batch, args.seq)}

    def make_torch(model):
        from _torch_reference import bert_from_onnx
        return bert_from_onnx(model, attention=args.attention)

    return run_benchmark(args, model_name="bert_base", make_model=make_model, make_feeds=make_feeds,
                         make_torch=make_torch, channels_last=False, targets=TARGETS,
                         config={"seq": args.seq, "layers": args.layers, "attention": args.attention})


if __name__ == "__main__":
    main()
