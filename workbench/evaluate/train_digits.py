"""Train the bundled digits CNN in pure numpy and export it as ONNX.

Random-weight zoo models show that an optimized engine agrees with a reference, not that
its output still classifies anything; INT8 calibration and precision experiments need a
model whose accuracy can drop. This script trains a small CNN on scikit-learn's 8x8
handwritten digits (hand-written forward/backward with im2col, Adam, no torch), checks
that onnxruntime on the exported file matches the numpy model, and writes into
workbench/evaluate/data/:
  digits_cnn.onnx   input "input" [N,1,8,8] raw pixels 0..16 (the /16 is inside the model)
  digits_cnn.json   test accuracy, sample counts, seed, epochs
  digits_test.npz / digits_train.npz   images float32 [n,1,8,8] raw 0..16, labels int64 [n]

Run: python -m workbench.evaluate.train_digits   (well under a minute on two cores)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DATA_DIR = Path(__file__).resolve().parent / "data"
SCALE = np.float32(1.0 / 16.0)   # exact in binary, so Mul(1/16) == Div(16)


# -- layers: NHWC inside (contiguous channels make im2col a free reshape); 3x3, padding 1 ----
# Conv weights are kept as [9*cin, cout] matrices, rows ordered (ky, kx, cin); `export`
# converts them (and fc1's columns, flattened here in (h, w, c) order) to ONNX's NCHW.
def _im2col(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return np.stack([xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=3).reshape(n * h * w, 9 * c)


def _conv(x, w, b):
    cols = _im2col(x)
    return (cols @ w + b).reshape(*x.shape[:3], -1), cols


def _conv_back(dy, cols, w, x_shape, need_dx=True):
    dflat = dy.reshape(-1, w.shape[1])
    dw, db = cols.T @ dflat, dflat.sum(axis=0)
    if not need_dx:
        return None, dw, db
    n, h, wd, c = x_shape
    dcols = (dflat @ w.T).reshape(n, h, wd, 9, c)
    dxp = np.zeros((n, h + 2, wd + 2, c), dy.dtype)
    for q in range(9):
        i, j = divmod(q, 3)
        dxp[:, i:i + h, j:j + wd] += dcols[:, :, :, q]
    return dxp[:, 1:-1, 1:-1], dw, db


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return {"conv1.weight": he((9, 16), 9), "conv1.bias": np.zeros(16, np.float32),
            "conv2.weight": he((144, 32), 144), "conv2.bias": np.zeros(32, np.float32),
            "conv3.weight": he((288, 32), 288), "conv3.bias": np.zeros(32, np.float32),
            "fc1.weight": he((64, 512), 512), "fc1.bias": np.zeros(64, np.float32),
            "fc2.weight": he((10, 64), 64) * np.float32(0.5), "fc2.bias": np.zeros(10, np.float32)}


def forward(p: dict, x: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Logits for raw pixels x [n,1,8,8]; fills `cache` with what backward needs."""
    n = x.shape[0]
    x0 = x.transpose(0, 2, 3, 1) * SCALE
    c1, cols1 = _conv(x0, p["conv1.weight"], p["conv1.bias"])
    r1 = np.maximum(c1, 0)
    c2, cols2 = _conv(r1, p["conv2.weight"], p["conv2.bias"])
    blocks = np.maximum(c2, 0).reshape(n, 4, 2, 4, 2, 32)
    pooled = blocks.max(axis=(2, 4))
    c3, cols3 = _conv(pooled, p["conv3.weight"], p["conv3.bias"])
    f = np.maximum(c3, 0).reshape(n, -1)
    h = f @ p["fc1.weight"].T + p["fc1.bias"]
    r4 = np.maximum(h, 0)
    logits = r4 @ p["fc2.weight"].T + p["fc2.bias"]
    if cache is not None:
        cache.update(x0=x0, c1=c1, cols1=cols1, r1=r1, c2=c2, cols2=cols2, blocks=blocks, pooled=pooled,
                     c3=c3, cols3=cols3, f=f, h=h, r4=r4)
    return logits


def backward(p: dict, cache: dict, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    g = {}
    g["fc2.weight"], g["fc2.bias"] = dlogits.T @ cache["r4"], dlogits.sum(0)
    dh = (dlogits @ p["fc2.weight"]) * (cache["h"] > 0)
    g["fc1.weight"], g["fc1.bias"] = dh.T @ cache["f"], dh.sum(0)
    dc3 = (dh @ p["fc1.weight"]).reshape(cache["c3"].shape) * (cache["c3"] > 0)
    dpool, g["conv3.weight"], g["conv3.bias"] = _conv_back(dc3, cache["cols3"], p["conv3.weight"],
                                                           cache["pooled"].shape)
    mask = cache["blocks"] == cache["pooled"][:, :, None, :, None]
    dc2 = (mask * dpool[:, :, None, :, None]).reshape(cache["c2"].shape) * (cache["c2"] > 0)
    dr1, g["conv2.weight"], g["conv2.bias"] = _conv_back(dc2, cache["cols2"], p["conv2.weight"], cache["r1"].shape)
    dc1 = dr1 * (cache["c1"] > 0)
    _, g["conv1.weight"], g["conv1.bias"] = _conv_back(dc1, cache["cols1"], p["conv1.weight"],
                                                      cache["x0"].shape, need_dx=False)
    return g


def _shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shifts of up to one pixel in each direction, zero fill."""
    out = np.zeros_like(x)
    for k, (dy, dx) in enumerate(rng.integers(-1, 2, size=(len(x), 2))):
        src = x[k, :, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
        out[k, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def train(x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int, batch: int = 64, lr: float = 2e-3,
          weight_decay: float = 1e-4, log=print) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    steps_per_epoch = -(-len(x) // batch)
    total, step = epochs * steps_per_epoch, 0
    b1, b2, eps = 0.9, 0.999, 1e-8
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        loss_sum = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            xb = _shift(x[idx], rng) if rng.random() < 0.75 else x[idx]
            cache: dict = {}
            logits = forward(p, xb, cache)
            z = logits - logits.max(axis=1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            loss_sum += float(-np.log(prob[np.arange(len(idx)), y[idx]] + 1e-12).mean()) * len(idx)
            prob[np.arange(len(idx)), y[idx]] -= 1
            grads = backward(p, cache, (prob / len(idx)).astype(np.float32))
            step += 1
            rate = lr * 0.5 * (1 + np.cos(np.pi * step / total))          # cosine decay
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                update = (m[k] / (1 - b1 ** step)) / (np.sqrt(v[k] / (1 - b2 ** step)) + eps)
                p[k] = (p[k] - rate * (update + weight_decay * p[k])).astype(np.float32)
        if log and (epoch + 1) % 5 == 0:
            log(f"epoch {epoch + 1:3d}/{epochs}  loss {loss_sum / len(x):.4f}")
    return p


def export(p: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The trained net as an opset-17 ONNX graph with readable node names."""
    p = dict(p)
    for k in ("conv1.weight", "conv2.weight", "conv3.weight"):       # [(ky,kx,cin), cout] -> OIHW
        p[k] = p[k].reshape(3, 3, -1, p[k].shape[1]).transpose(3, 2, 0, 1)
    p["fc1.weight"] = p["fc1.weight"].reshape(-1, 4, 4, 32).transpose(0, 3, 1, 2).reshape(-1, 512)
    inits = [numpy_helper.from_array(np.ascontiguousarray(a), k) for k, a in p.items()]
    inits.append(numpy_helper.from_array(np.array(SCALE, np.float32), "input_scale"))
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    n = helper.make_node
    nodes = [n("Mul", ["input", "input_scale"], ["normalize"], name="normalize"),
             n("Conv", ["normalize", "conv1.weight", "conv1.bias"], ["conv1"], name="conv1", **conv),
             n("Relu", ["conv1"], ["relu1"], name="relu1"),
             n("Conv", ["relu1", "conv2.weight", "conv2.bias"], ["conv2"], name="conv2", **conv),
             n("Relu", ["conv2"], ["relu2"], name="relu2"),
             n("MaxPool", ["relu2"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["pool", "conv3.weight", "conv3.bias"], ["conv3"], name="conv3", **conv),
             n("Relu", ["conv3"], ["relu3"], name="relu3"),
             n("Flatten", ["relu3"], ["flatten"], name="flatten", axis=1),
             n("Gemm", ["flatten", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
             n("Relu", ["fc1"], ["relu4"], name="relu4"),
             n("Gemm", ["relu4", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "digits_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="workbench.evaluate.train_digits",
                              doc_string="CNN on sklearn digits; feed raw 0..16 pixels as float32 [N,1,8,8]")
    onnx.checker.check_model(model, full_check=True)
    return model


def load_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None]            # [1797,1,8,8], 0..16
    labels = digits.target.astype(np.int64)
    return train_test_split(images, labels, test_size=0.2, random_state=seed, stratify=labels)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=DATA_DIR)
    args = ap.parse_args(argv)
    x_train, x_test, y_train, y_test = load_split(0)
    print(f"train {len(x_train)}  test {len(x_test)}  seed {args.seed}  epochs {args.epochs}")
    start = time.perf_counter()
    try:                # tiny matmuls: BLAS threads only add contention, and 1 thread is reproducible
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            params = train(x_train, y_train, seed=args.seed, epochs=args.epochs, batch=args.batch)
    except ImportError:
        params = train(x_train, y_train, seed=args.seed, epochs=args.epochs, batch=args.batch)
    seconds = time.perf_counter() - start
    numpy_pred = forward(params, x_test).argmax(axis=1)

    import onnxruntime as ort
    model = export(params)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_pred = session.run(["logits"], {"input": x_test})[0].argmax(axis=1)
    accuracy = float((ort_pred == y_test).mean())
    numpy_accuracy = float((numpy_pred == y_test).mean())
    print(f"trained in {seconds:.1f} s; test accuracy numpy {numpy_accuracy:.4f}, onnxruntime {accuracy:.4f}")
    if accuracy != numpy_accuracy:
        raise SystemExit("onnxruntime disagrees with the numpy model: export bug")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out / "digits_cnn.onnx")
    np.savez_compressed(args.out / "digits_test.npz", images=x_test, labels=y_test)
    np.savez_compressed(args.out / "digits_train.npz", images=x_train, labels=y_train)
    meta = {"test_accuracy": accuracy, "train_samples": len(x_train), "test_samples": len(x_test),
            "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch, "split_random_state": 0,
            "architecture": "Mul(1/16) conv3x3(16) relu conv3x3(32) relu maxpool2 conv3x3(32) relu "
                            "flatten gemm(64) relu gemm(10)"}
    (args.out / "digits_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in ("digits_cnn.onnx", "digits_cnn.json", "digits_test.npz", "digits_train.npz"):
        print(f"wrote {args.out / f}  ({(args.out / f).stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
