"""The CLI builds, runs and inspects through the same API, and reports errors without tracebacks."""
from __future__ import annotations

import numpy as np
import onnx

import workbench as wb
from workbench.cli import main


def test_build_run_inspect(tmp_path, tiny_model, capsys):
    model_path, plan_path = tmp_path / "m.onnx", tmp_path / "m.wbplan"
    onnx.save(tiny_model, model_path)
    assert main(["build", str(model_path), "-o", str(plan_path), "--profile", "1,2,4"]) == 0
    engine = wb.Engine.load(plan_path)
    assert engine.profile.max == 4
    assert main(["run", str(plan_path), "--batch", "3", "--iters", "2"]) == 0
    assert "logits: shape (3, 5)" in capsys.readouterr().out
    assert main(["inspect", str(plan_path)]) == 0
    assert "Conv" in capsys.readouterr().out


def test_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.onnx" in err and "Traceback" not in err
