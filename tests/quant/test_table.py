"""CalibrationTable: JSON round trip, atomic save, and refusal of a table computed on another model."""
import json

import pytest

from workbench.quant.errors import CalibrationError
from workbench.quant.table import FORMAT, CalibrationTable, model_hash


def table(h="a" * 64):
    return CalibrationTable(model_hash=h, calibrator={"name": "entropy", "params": {"num_quantized_bins": 128}},
                            num_samples=512, scales={"conv1": 0.0123, "relu/out:0": 1.0},
                            amax={"conv1": 1.5621, "relu/out:0": 0.0}, num_batches=16)


def test_round_trip_and_readable(tmp_path):
    t = table()
    assert CalibrationTable.from_json(t.to_json()) == t
    path = t.save(tmp_path / "model.calib.json")
    text = path.read_text()
    assert text.startswith("{\n  \"format\": \"" + FORMAT) and '"conv1": 0.0123' in text
    assert CalibrationTable.load(path, expected_model_hash="a" * 64) == t
    assert [p.name for p in tmp_path.iterdir()] == ["model.calib.json"]        # no temp file left
    assert t.to_frame().set_index("tensor").loc["conv1", "scale"] == 0.0123
    assert t.created.endswith("+00:00") and t.workbench_version


def test_hash_mismatch_is_refused_naming_both(tmp_path):
    path = table("a" * 64).save(tmp_path / "c.json")
    with pytest.raises(CalibrationError) as e:
        CalibrationTable.load(path, expected_model_hash="b" * 64)
    assert "a" * 64 in str(e.value) and "b" * 64 in str(e.value) and str(path) in str(e.value)
    assert CalibrationTable.load(path).model_hash == "a" * 64                # no expectation: accepted


def test_model_hash():
    import onnx
    from onnx import helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    m = helper.make_model(g)
    assert model_hash(m) == model_hash(m.SerializeToString()) and len(model_hash(b"")) == 64
    assert model_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_bad_files(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        CalibrationTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    for text, msg in [("{not json", "invalid JSON"), ('{"format": "trt"}', "format"),
                      (json.dumps({"format": FORMAT, "model_hash": ""}), "lacks field"),
                      (table().to_json().replace("0.0123", "-1"), "not > 0"),
                      (table().to_json().replace("0.0123", "NaN"), "not finite")]:
        bad.write_text(text)
        with pytest.raises(CalibrationError, match=msg) as e:
            CalibrationTable.load(bad)
        assert str(bad) in str(e.value)
