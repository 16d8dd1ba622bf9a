"""2:4 pruning and checks on hand-made matrices, on Conv/Gemm/MatMul layouts, and the report."""
import numpy as np
import pytest

from workbench.quant.errors import SparsityError
from workbench.quant.sparsity import is_2to4, prune_2to4, reduction_length, sparsity_report


def test_prune_by_hand():
    w = np.array([[1.0, -4.0, 3.0, 2.0, 0.5, 0.5, 0.5, 0.5],
                  [-9.0, 0.0, 0.0, 1.0, 2.0, -2.0, 3.0, -3.0]], np.float32)
    pruned, mask = prune_2to4(w)
    assert pruned.tolist() == [[0.0, -4.0, 3.0, 0.0, 0.5, 0.5, 0.0, 0.0],      # ties: lower index first
                               [-9.0, 0.0, 0.0, 1.0, 0.0, 0.0, 3.0, -3.0]]
    assert mask.dtype == bool and mask.sum() == 8 and pruned.dtype == np.float32
    assert is_2to4(pruned) and not is_2to4(w)
    assert is_2to4(np.zeros((3, 8)))                                            # fewer than 2 is fine


def test_matmul_layout_axis0():
    rng = np.random.default_rng(0)
    b = rng.standard_normal((8, 3))                                             # MatMul B [K, N]
    pruned, mask = prune_2to4(b, axis=0)
    groups = np.abs(b).T.reshape(3, 2, 4)
    kept = np.sort(groups, axis=-1)[..., 2:]
    np.testing.assert_array_equal(np.sort(np.abs(pruned).T.reshape(3, 2, 4), axis=-1)[..., 2:], kept)
    assert is_2to4(pruned, axis=0) and not is_2to4(pruned, axis=-1)             # N = 3: ineligible
    assert (np.count_nonzero(pruned.T.reshape(3, 2, 4), axis=-1) == 2).all()


def test_conv_flattens_all_but_dim0():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)                   # K = 3*2*2 = 12
    pruned, mask = prune_2to4(w)
    assert pruned.shape == w.shape and reduction_length(w) == 12
    flat = pruned.reshape(4, 3, 4)                                              # consecutive in (i, kh, kw)
    assert (np.count_nonzero(flat, axis=-1) == 2).all() and is_2to4(pruned)
    # TensorRT's pattern (groups of input channels at each (kh, kw)) via the KRSC view
    w8 = rng.standard_normal((2, 8, 3, 3))
    trt = prune_2to4(w8.transpose(0, 2, 3, 1))[0].transpose(0, 3, 1, 2)
    assert (np.count_nonzero(trt.reshape(2, 2, 4, 3, 3), axis=2) == 2).all()


def test_not_multiple_of_4():
    with pytest.raises(SparsityError, match=r"\(8, 3, 3, 3\).*27") as e:
        prune_2to4(np.ones((8, 3, 3, 3)))
    assert e.value.shape == (8, 3, 3, 3) and e.value.reduction_len == 27
    with pytest.raises(SparsityError, match=r"\(10, 6\)"):
        prune_2to4(np.ones((10, 6)), axis=-1)
    assert prune_2to4(np.ones((8, 6)), axis=0)[0].sum() == 24
    assert not is_2to4(np.zeros((10, 6)))


def test_report():
    rng = np.random.default_rng(2)
    dense = rng.standard_normal((8, 16))
    df = sparsity_report({"fc": dense, "fc.pruned": prune_2to4(dense)[0], "conv": np.ones((8, 3, 3, 3)),
                          "mm": np.ones((12, 5))}, axis={"mm": 0})
    assert list(df.columns) == ["name", "shape", "reduction_len", "eligible", "is_2to4", "density"]
    r = df.set_index("name")
    assert r.loc["fc", "eligible"] and not r.loc["fc", "is_2to4"] and r.loc["fc", "density"] == 1.0
    assert r.loc["fc.pruned", "is_2to4"] and r.loc["fc.pruned", "density"] == 0.5
    assert r.loc["conv", "reduction_len"] == 27 and not r.loc["conv", "eligible"]
    assert r.loc["mm", "reduction_len"] == 12 and r.loc["mm", "eligible"]
