"""Metrics, comparisons, datasets, the model zoo and the onnx.backend adapter."""
