"""cublas.attention (and the fused kernel when registered) against the CPU oracle of
workbench::FusedAttention: masks, K transposed or not, fp32 and fp16, BERT's shapes."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu
RNG = np.random.default_rng(0)
ATTENTION = [t for t in TACTICS if t.name == "cublas.attention" or t.name.startswith("kernels.flash_attention")]


def _layer(scale, k_transposed, precision, with_mask=True):
    inputs = ["q", "k", "v"] + (["mask"] if with_mask else [])
    return Layer("attn", "FusedAttention", inputs, ["y"], {"scale": scale, "k_transposed": k_transposed},
                 domain="workbench", opset=1, precision=precision)


def test_attention_supports():
    tactic = next(t for t in TACTICS if t.name == "cublas.attention")
    assert tactic.supports(_layer(0.125, 1, "fp16"), "fp16")
    assert not tactic.supports(_layer(0.125, 1, "int8"), "int8")
    assert not tactic.supports(Layer("a", "Softmax", ["x"], ["y"]), "fp16")


def _inputs(batch, sq, sk, d, dv, k_transposed, dtype, mask_shape):
    q = RNG.standard_normal(batch + (sq, d)).astype(dtype)
    k = RNG.standard_normal(batch + ((d, sk) if k_transposed else (sk, d))).astype(dtype)
    v = RNG.standard_normal(batch + (sk, dv)).astype(dtype)
    inputs = [q, k, v]
    if mask_shape is not None:
        keep = RNG.random(mask_shape) > 0.2
        inputs.append(np.where(keep, 0.0, -10000.0).astype(dtype))
    return inputs


@gpu
@pytest.mark.parametrize("tactic", ATTENTION, ids=lambda t: t.name)
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
@pytest.mark.parametrize("k_transposed", [0, 1])
def test_bert_like_attention(cp, tactic, precision, k_transposed):
    dtype = np.float16 if precision == "fp16" else np.float32
    inputs = _inputs((2, 4), 128, 128, 64, 64, k_transposed, dtype, (2, 1, 1, 128))
    layer = _layer(0.125, k_transposed, precision)
    if tactic.supports(layer, precision):
        assert_matches_oracle(tactic, layer, {}, inputs)


@gpu
@pytest.mark.parametrize("tactic", ATTENTION, ids=lambda t: t.name)
@pytest.mark.parametrize("batch,sq,sk,d,dv,mask_shape", [
    ((3,), 17, 45, 32, 16, None),              # odd sizes, cross attention, no mask
    ((2, 3), 33, 33, 64, 64, (33, 33)),        # a [Sq, Sk] mask shared by every head
    ((1, 2), 5, 200, 8, 24, (1, 2, 5, 200)),   # a full mask
    ((), 9, 12, 16, 16, (1, 12)),              # no batch dims
])
def test_attention_shapes(cp, tactic, batch, sq, sk, d, dv, mask_shape):
    inputs = _inputs(batch, sq, sk, d, dv, 0, np.float32, mask_shape)
    layer = _layer(1 / np.sqrt(d), 0, "fp32", with_mask=mask_shape is not None)
    if tactic.supports(layer, "fp32"):
        assert_matches_oracle(tactic, layer, {}, inputs)


@gpu
def test_attention_mask_as_constant(cp):
    tactic = next(t for t in TACTICS if t.name == "cublas.attention")
    inputs = _inputs((2, 2), 16, 16, 32, 32, 1, np.float16, (1, 1, 16, 16))
    assert_matches_oracle(tactic, _layer(0.2, 1, "fp16"), {"mask": inputs[3]}, inputs)


@gpu
@pytest.mark.parametrize("tactic", ATTENTION, ids=lambda t: t.name)
@pytest.mark.parametrize("batch,sq,sk,d,k_transposed,mask_shape", [
    ((2, 3), 100, 77, 64, 1, (2, 1, 1, 77)),    # partial row and key tiles, keys not a multiple of 8
    ((2,), 65, 130, 32, 0, (65, 130)),
    ((1, 2), 64, 64, 128, 1, None),
    ((3, 2), 7, 200, 64, 0, (3, 2, 7, 200)),
])
def test_fp16_partial_tiles(cp, tactic, batch, sq, sk, d, k_transposed, mask_shape):
    inputs = _inputs(batch, sq, sk, d, d, k_transposed, np.float16, mask_shape)
    layer = _layer(1 / np.sqrt(d), k_transposed, "fp16", with_mask=mask_shape is not None)
    layer.output_shapes = [batch + (sq, d)]            # supports() reads the head dim off it
    if tactic.supports(layer, "fp16"):
        assert_matches_oracle(tactic, layer, {}, inputs)


@gpu
@pytest.mark.parametrize("tactic", ATTENTION, ids=lambda t: t.name)
def test_attention_is_capturable(cp, tactic):
    from graph_checks import assert_capturable
    inputs = _inputs((2, 3), 64, 64, 64, 64, 1, np.float16, (2, 1, 1, 64))
    assert_capturable(tactic, _layer(0.125, 1, "fp16"), {}, inputs)


@gpu
@pytest.mark.parametrize("tactic", ATTENTION, ids=lambda t: t.name)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("b,s,h,d,mask_shape", [
    (4, 128, 12, 64, (4, 1, 128, 128)),      # BERT's projections read in place, a full padding mask
    (3, 37, 2, 32, (3, 1, 1, 37)),           # partial tiles
    (1, 64, 4, 128, None),
])
def test_bshd_layout(cp, tactic, precision, b, s, h, d, mask_shape):
    """qkv_layout="bshd": Q, K, V and Y are [B, S, H, D] (heads not transposed out)."""
    dtype = np.float16 if precision == "fp16" else np.float32
    inputs = [RNG.standard_normal((b, s, h, d)).astype(dtype) for _ in range(3)]
    if mask_shape is not None:
        inputs.append(np.where(RNG.random(mask_shape) > 0.2, 0.0, -10000.0).astype(dtype))
    layer = _layer(1 / np.sqrt(d), 0, precision, with_mask=mask_shape is not None)
    layer.attrs["qkv_layout"] = "bshd"
    layer.output_shapes = [(b, s, h, d)]
    if tactic.supports(layer, precision):
        assert_matches_oracle(tactic, layer, {}, inputs)
