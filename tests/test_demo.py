"""`make demo` runs end to end: accuracy, latency table, precision table, a saved plan that reloads."""
from __future__ import annotations

import logging
import re

import workbench as wb
from workbench.demo import main


def test_demo_runs_and_leaves_a_plan(tmp_path, caplog):
    plan = tmp_path / "digits.wbplan"
    with caplog.at_level(logging.INFO, logger="workbench.demo"):
        assert main(["--plan", str(plan), "--iters", "2"]) == 0
    text = caplog.text
    assert float(re.search(r"FP32 top-1 accuracy ([\d.]+)%", text).group(1)) >= 97.0
    assert "latency.median_ms" in text and "reloaded plan gives identical outputs: True" in text
    assert all(p in text for p in ("fp16", "bf16", "int8"))
    assert wb.Engine.load(plan).layers
