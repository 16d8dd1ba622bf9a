"""`%load_ext workbench` in a real IPython shell: the magics bind real objects whose numbers match
onnxruntime, and bad input comes back as one UsageError line naming the culprit."""
from __future__ import annotations

import shlex

import numpy as np
import pytest

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.metrics import accuracy, predict

from conftest import ort_run, rel_l2

pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

MODEL = shlex.quote(str(digits_model_path()))


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "workbench")
    return shell


@pytest.fixture(scope="module")
def images():
    return digits_test(16)


def reference(x: np.ndarray) -> np.ndarray:
    import onnx
    return ort_run(onnx.load(digits_model_path()), {"input": x})["logits"]


def test_extension_registers_magics_and_displays(ip):
    for name in ("wb_load", "wb_build", "wb_sweep"):
        assert ip.find_line_magic(name) is not None, name
    assert ip.find_cell_magic("wb_profile") is not None
    assert ip.display_formatter.formatters["text/html"].lookup_by_type(wb.Engine).__name__ == "engine_html"


def test_wb_load_binds_graph_and_optimizes(ip):
    graph = ip.run_line_magic("wb_load", MODEL)
    assert ip.user_ns["graph"] is graph and len(graph.nodes) == 12
    optimized = ip.run_line_magic("wb_load", f"{MODEL} --optimize --as model")
    assert ip.user_ns["model"] is optimized and len(optimized.nodes) == 8
    assert ip.user_ns["model_report"].nodes_before == 12 and ip.user_ns["model_report"].nodes_after == 8
    assert len(ip.user_ns["model_original"].nodes) == 12


def test_wb_load_missing_file_names_it(ip, tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(UsageError, match="nope.onnx"):
        ip.run_line_magic("wb_load", str(missing))


def test_wb_build_matches_onnxruntime(ip, images):
    x, _ = images
    ip.run_line_magic("wb_load", f"{MODEL} --optimize")
    engine = ip.run_line_magic("wb_build", "--precision fp32 --batch 16")
    assert ip.user_ns["engine"] is engine
    assert engine.precision == "fp32" and (engine.profile.min, engine.profile.max) == (16, 16)
    assert rel_l2(engine.create_context().run({"input": x})["logits"], reference(x)) < 1e-5

    fp16 = ip.run_line_magic("wb_build", "--precision fp16 --profile 1,8,16 --level 0 --as half")
    assert ip.user_ns["half"] is fp16 and fp16.precision == "fp16"
    assert (fp16.profile.min, fp16.profile.opt, fp16.profile.max) == (1, 8, 16)
    assert 1e-6 < rel_l2(fp16.create_context().run({"input": x})["logits"], reference(x)) < 1e-2


def test_wb_build_timing_cache_and_model_path(ip, tmp_path):
    cache = tmp_path / "timing.json"
    first = ip.run_line_magic("wb_build", f"--model {MODEL} --batch 4 --timing-cache {shlex.quote(str(cache))} --as e1")
    assert cache.is_file()
    second = ip.run_line_magic("wb_build", f"--model {MODEL} --batch 4 --timing-cache {shlex.quote(str(cache))} --as e2")
    assert first.meta["timing_cache"]["misses"] > 0
    assert second.meta["timing_cache"]["misses"] == 0 and second.meta["timing_cache"]["hits"] > 0


def test_wb_build_int8_needs_and_takes_calibration(ip):
    ip.run_line_magic("wb_load", MODEL)
    with pytest.raises(UsageError, match="calibration"):
        ip.run_line_magic("wb_build", "--precision int8 --batch 8")
    engine = ip.run_line_magic("wb_build", "--precision int8 --batch 8 --calibration digits --as q")
    assert engine.precision == "int8"
    x, y = digits_test()
    assert accuracy(predict(engine, x, 8), y) > 0.9


@pytest.mark.parametrize("line, message", [
    ("--precision fp64", "precision 'fp64' is not supported"),
    ("--batch 8 --profile 1,8,32", "not allowed with"),
    ("--level 7", "builder_level must be 0, 1, 2 or 3"),
    ("--graph missing_graph", "no variable 'missing_graph'"),
    ("--graph images_not_graph", "is a tuple, expected a Graph"),
    ("--bogus", "unrecognized arguments: --bogus"),
])
def test_wb_build_bad_flags_name_the_culprit(ip, line, message):
    ip.run_line_magic("wb_load", MODEL)
    ip.user_ns["images_not_graph"] = (1, 2)
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("wb_build", line)


def test_wb_sweep_dataframe(ip):
    ip.run_line_magic("wb_load", f"{MODEL} --optimize")
    df = ip.run_line_magic("wb_sweep", "--precisions fp32,fp16 --batches 1,8 --iters 2")
    assert ip.user_ns["sweep_results"] is df
    assert list(zip(df["precision"], df["batch"])) == [("fp32", 1), ("fp32", 8), ("fp16", 1), ("fp16", 8)]
    x, y = digits_test()
    reference_accuracy = float(np.mean(np.argmax(reference(x), axis=1) == y))
    assert df.loc[df["precision"] == "fp32", "accuracy"].tolist() == [reference_accuracy] * 2
    assert (df["latency.median_ms"] > 0).all()


def test_wb_profile_takes_the_last_expression(ip):
    ip.run_line_magic("wb_load", f"{MODEL} --optimize")
    engine = ip.run_line_magic("wb_build", "--batch 8")
    cell = "from workbench.evaluate.datasets import digits_test\nx, _ = digits_test(8)\n{'input': x}\n"
    df = ip.run_cell_magic("wb_profile", "--iters 2", cell)
    assert ip.user_ns["layer_profile"] is df
    assert df["layer"].tolist() == [layer.name for layer in engine.layers]
    assert df["percent"].sum() == pytest.approx(100.0, abs=0.5)
    assert (df["time_ms"] > 0).all()


def test_wb_profile_reads_feeds_variable_or_one_array(ip):
    ip.run_line_magic("wb_build", f"--model {MODEL} --batch 4 --as small")
    cell = "from workbench.evaluate.datasets import digits_test\nfeeds = {'input': digits_test(4)[0]}\n"
    df = ip.run_cell_magic("wb_profile", "--engine small --iters 1 --as p1", cell)
    assert ip.user_ns["p1"] is df and len(df) == len(ip.user_ns["small"].layers)
    df = ip.run_cell_magic("wb_profile", "--engine small --iters 1 --as p2", "digits_test(4)[0]\n")
    assert len(df) == len(ip.user_ns["small"].layers)


def test_wb_profile_errors(ip):
    ip.run_line_magic("wb_build", f"--model {MODEL} --batch 4 --as small")
    ip.user_ns.pop("feeds", None)
    with pytest.raises(UsageError, match="feeds"):
        ip.run_cell_magic("wb_profile", "--engine small", "y = 1\n")
    with pytest.raises(UsageError, match="no variable 'nothing_here'"):
        ip.run_cell_magic("wb_profile", "--engine nothing_here", "{}\n")
    # a cell that raises: IPython shows its traceback, the magic profiles nothing
    assert ip.run_cell_magic("wb_profile", "--engine small --as p3", "1 / 0\n") is None
    assert "p3" not in ip.user_ns
