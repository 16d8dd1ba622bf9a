"""Notebook 06 (sparsity and weight-only INT8) executes top to bottom and shows what it claims."""
from __future__ import annotations

import re

import pytest

from test_notebooks import execute, outputs_of


@pytest.mark.slow
def test_sparsity_and_weight_only_notebook_reports_sizes_and_accuracy():
    text, images = outputs_of(execute("06_sparsity_and_weight_only.ipynb"))
    fp32 = float(re.search(r"FP32 test accuracy: ([\d.]+)%", text).group(1))
    weight_only, ratio = re.search(r"weight-only INT8 test accuracy: ([\d.]+)%, plan [\d,]+ bytes = ([\d.]+) x FP32",
                                   text).groups()
    assert fp32 >= 97.0 and float(ratio) <= 0.3 and abs(float(weight_only) - fp32) <= 0.5
    assert float(re.search(r"2:4 \(all eligible layers\) test accuracy: ([\d.]+)%", text).group(1)) < fp32
    assert "force skipped: [('conv1+relu1', 'reduction length 9 is not a multiple of 4" in text
    assert "sparse-eligible layers: ['conv3+relu3', 'fc1+relu4']" in text
    variants = re.findall(r"^\s*(fp32|weight-only int8|2:4 all eligible|2:4 large layers|2:4 large \+ weight-only int8)"
                          r"\s+[\d.]+\s+\d+", text, re.M)
    assert len(variants) == 5
    assert images >= 1                                   # the size / accuracy bars
