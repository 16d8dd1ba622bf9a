"""PyTorch references for the GPU benchmark: the zoo's ONNX graphs rebuilt as torch modules with
the SAME weights, and torch eager / torch.compile measured the way `_gpu_timing` measures ours.

The modules mirror the zoo builders layer for layer and use their parameter names (which are the
torchvision / HuggingFace names), so the ONNX initializers load by name. Whether a weight must be
transposed is read from the graph, not guessed from its shape: an initializer consumed as the
right operand of a MatMul is [in, out] (torch Linear wants [out, in]); Gemm with transB=1 and Conv
weights are already in torch's layout. Every parameter must be found, and found with its shape.

torch is the reference here and nowhere else: nothing under workbench/ imports it.
"""
from __future__ import annotations

import copy
import math
import re
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from _gpu_timing import measure, torch_clock

__all__ = ["BertTorch", "ResNetTorch", "bert_from_onnx", "load_onnx_weights", "measure_torch", "resnet_from_onnx"]


# -- weights ------------------------------------------------------------------------------------
def _matmul_weights(model: onnx.ModelProto) -> set[str]:
    """Initializers read as the right operand of a MatMul: stored [in, out]."""
    return {n.input[1] for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1}


def load_onnx_weights(module: nn.Module, model: onnx.ModelProto) -> list[str]:
    """Copy every parameter and buffer of `module` from the ONNX initializer of the same name.

    Returns the initializers no parameter took (graph constants such as `const.sqrt2`).
    Raises KeyError / ValueError naming the parameter that has no initializer or the wrong shape.
    """
    inits = {t.name: t for t in model.graph.initializer}
    transposed = _matmul_weights(model)
    used = set()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name not in inits:
                raise KeyError(f"torch parameter {name!r} has no ONNX initializer of that name in "
                               f"{model.graph.name!r}")
            value = numpy_helper.to_array(inits[name])
            if name in transposed:
                value = value.T
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"initializer {name!r}: shape {value.shape}{' (transposed)' * (name in transposed)} "
                                 f"does not fit torch parameter shape {tuple(tensor.shape)}")
            tensor.copy_(torch.from_numpy(np.array(value)))        # a writable copy
            used.add(name)
    return sorted(set(inits) - used)


def _attr(model: onnx.ModelProto, op: str, name: str, default):
    """The one value attribute `name` takes on every `op` node (mixed values are refused)."""
    values = {onnx.helper.get_attribute_value(a) for n in model.graph.node if n.op_type == op
              for a in n.attribute if a.name == name} or {default}
    if len(values) != 1:
        raise ValueError(f"{op} nodes of {model.graph.name!r} use several {name} values {values}; the torch "
                         "mirror has one")
    return values.pop()


def _shape(model: onnx.ModelProto, name: str) -> tuple[int, ...]:
    for t in model.graph.initializer:
        if t.name == name:
            return tuple(t.dims)
    raise KeyError(f"{model.graph.name!r} has no initializer {name!r}")


# -- ResNet ---------------------------------------------------------------------------------------
class _Block(nn.Module):
    """torchvision's BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1 x4)."""

    def __init__(self, cin: int, planes: int, stride: int, bottleneck: bool, eps: float):
        super().__init__()
        out = planes * 4 if bottleneck else planes
        if bottleneck:
            shapes = [(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, out, 1, 1)]
        else:
            shapes = [(cin, planes, 3, stride), (planes, planes, 3, 1)]
        for i, (ci, co, k, s) in enumerate(shapes, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(ci, co, k, s, k // 2, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(co, eps=eps))
        self.depth = len(shapes)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out, eps=eps))

    def forward(self, x):
        y = x
        for i in range(1, self.depth + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
            if i < self.depth:
                y = F.relu(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetTorch(nn.Module):
    """The zoo's ResNet-18/50 (torchvision layout and names, so its state_dict also fits
    torchvision.models.resnet18/50)."""
    output_names = ("logits",)

    def __init__(self, stage_blocks: list[int], bottleneck: bool, num_classes: int, eps: float = 1e-5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=eps)
        cin = 64
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), stage_blocks), start=1):
            blocks = []
            for i in range(n):
                blocks.append(_Block(cin, planes, 2 if (stage > 1 and i == 0) else 1, bottleneck, eps))
                cin = planes * 4 if bottleneck else planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet_from_onnx(model: onnx.ModelProto, use_torchvision: bool = False) -> nn.Module:
    """A float32 eval-mode torch ResNet holding the zoo model's weights (torchvision's class when asked)."""
    names = [t.name for t in model.graph.initializer]
    stage_blocks = [len({m.group(1) for n in names if (m := re.match(rf"layer{s}\.(\d+)\.", n))}) for s in range(1, 5)]
    bottleneck = any(".conv3." in n for n in names)
    num_classes = _shape(model, "fc.weight")[0]
    eps = float(_attr(model, "BatchNormalization", "epsilon", 1e-5))
    if use_torchvision:
        import torchvision
        if stage_blocks not in ([2, 2, 2, 2], [3, 4, 6, 3]) or eps != 1e-5:
            raise ValueError(f"torchvision has no ResNet with blocks {stage_blocks} and BN eps {eps}")
        module = getattr(torchvision.models, "resnet50" if bottleneck else "resnet18")(num_classes=num_classes)
        module.output_names = ResNetTorch.output_names
    else:
        module = ResNetTorch(stage_blocks, bottleneck, num_classes, eps)
    load_onnx_weights(module, model)
    return module.eval()


# -- BERT -----------------------------------------------------------------------------------------
def _ns(**children) -> nn.Module:
    """A plain container, so parameter names nest like HuggingFace's (attention.self.query...)."""
    module = nn.Module()
    for name, child in children.items():
        module.add_module(name, child)
    return module


class _BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, eps: float, attention: str):
        super().__init__()
        self.heads, self.attention_kind = heads, attention
        self.attention = _ns(self=_ns(query=nn.Linear(hidden, hidden), key=nn.Linear(hidden, hidden),
                                      value=nn.Linear(hidden, hidden)),
                             output=_ns(dense=nn.Linear(hidden, hidden), LayerNorm=nn.LayerNorm(hidden, eps)))
        self.intermediate = _ns(dense=nn.Linear(hidden, inter))
        self.output = _ns(dense=nn.Linear(inter, hidden), LayerNorm=nn.LayerNorm(hidden, eps))

    def forward(self, x, mask):
        b, s, h = x.shape
        attn = self.attention
        q, k, v = (getattr(attn.self, n)(x).view(b, s, self.heads, h // self.heads).transpose(1, 2)
                   for n in ("query", "key", "value"))
        if self.attention_kind == "sdpa":
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:       # the exported graph, op for op
            scores = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + mask
            ctx = torch.softmax(scores, dim=-1) @ v
        ctx = ctx.transpose(1, 2).reshape(b, s, h)
        x = attn.output.LayerNorm(attn.output.dense(ctx) + x)
        return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(x))) + x)


class BertTorch(nn.Module):
    """The zoo's BERT encoder + pooler with HuggingFace's names; token types are all zero, as in
    the graph. `attention`: "sdpa" (torch's fused attention, what HF uses by default) or "math"."""
    output_names = ("last_hidden_state", "pooler_output")

    def __init__(self, vocab: int, hidden: int, heads: int, inter: int, layers: int, max_position: int,
                 type_vocab: int, eps: float, attention: str = "sdpa"):
        super().__init__()
        if attention not in ("sdpa", "math"):
            raise ValueError(f"attention must be 'sdpa' or 'math', got {attention!r}")
        self.embeddings = _ns(word_embeddings=nn.Embedding(vocab, hidden),
                              position_embeddings=nn.Embedding(max_position, hidden),
                              token_type_embeddings=nn.Embedding(type_vocab, hidden),
                              LayerNorm=nn.LayerNorm(hidden, eps))
        self.encoder = _ns(layer=nn.ModuleList(_BertLayer(hidden, heads, inter, eps, attention)
                                               for _ in range(layers)))
        self.pooler = _ns(dense=nn.Linear(hidden, hidden))

    def forward(self, input_ids, attention_mask):
        e = self.embeddings
        seq = input_ids.shape[1]
        x = e.word_embeddings(input_ids) + e.token_type_embeddings.weight[0]
        x = e.LayerNorm(x + e.position_embeddings.weight[:seq])
        inverted = 1.0 - attention_mask[:, None, None, :].to(x.dtype)
        mask = torch.where(inverted != 0, torch.full_like(inverted, -10000.0), inverted)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler.dense(x[:, 0]))


def bert_from_onnx(model: onnx.ModelProto, attention: str = "sdpa") -> nn.Module:
    """A float32 eval-mode BertTorch holding the zoo model's weights; sizes read from the graph."""
    vocab, hidden = _shape(model, "embeddings.word_embeddings.weight")
    heads_dims = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "const.heads_dims")
    layers = len({n.split(".")[2] for n in (t.name for t in model.graph.initializer) if n.startswith("encoder.layer.")})
    module = BertTorch(vocab, hidden, int(heads_dims[0]), _shape(model, "encoder.layer.0.intermediate.dense.weight")[1],
                       layers, _shape(model, "embeddings.position_embeddings.weight")[0],
                       _shape(model, "embeddings.token_type_embeddings.weight")[0],
                       float(_attr(model, "LayerNormalization", "epsilon", 1e-5)), attention)
    load_onnx_weights(module, model)
    return module.eval()


# -- measuring ------------------------------------------------------------------------------------
def _outputs(module: nn.Module, result) -> dict[str, np.ndarray]:
    result = result if isinstance(result, tuple) else (result,)
    return {n: t.detach().float().cpu().numpy() for n, t in zip(module.output_names, result)}


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def measure_torch(module: nn.Module, feed_sets: list[dict[str, np.ndarray]], *, precision: str, device: str,
                  channels_last: bool, compile_mode: str | None, warmup: int, iters: int,
                  log=print) -> tuple[dict, dict]:
    """Reference outputs (float32 eager, TF32 off) and timings of eager and torch.compile at `precision`.

    Each feed set holds numpy arrays in the graph's input order, which is the module's argument order;
    sets after the first rotate through the timing loop (inputs that fit in L2 stay cold).

    Returns (parts, outputs): parts = {"torch_eager": {...}, "torch_compile": {...}} ready for the
    JSON, outputs = {"reference" | "torch_eager" | "torch_compile": {name: float32 array}} for feed set 0.
    compile_mode None skips torch.compile. A failing part records its error instead of ending the run.
    """
    dev = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    clock = torch_clock(device)
    torch.backends.cudnn.benchmark = True       # cuDNN tunes its conv algorithms, as our builder tunes tactics

    def inputs(dtype):
        sets = []
        for feeds in feed_sets:
            ts = [torch.from_numpy(v).to(dev) for v in feeds.values()]
            sets.append([t.to(dtype=dtype, memory_format=memory_format) if t.is_floating_point() and t.ndim == 4
                         else t.to(dtype) if t.is_floating_point() else t for t in ts])
        return sets

    # modules and inputs are made outside inference mode: inference tensors as parameters trip torch.compile
    _set_tf32(False)
    dtype = DTYPES[precision]
    model32 = module.to(dev, memory_format=memory_format)
    model = model32 if dtype == torch.float32 else copy.deepcopy(model32).to(dtype)
    xs32, xs = inputs(torch.float32), inputs(dtype)
    settings = {"dtype": str(dtype).replace("torch.", ""), "tf32": precision == "tf32",
                "channels_last": channels_last, "cudnn_benchmark": True}
    if dev.type == "cpu":
        settings["threads"] = torch.get_num_threads()
    outputs, parts = {}, {}
    with torch.inference_mode():
        outputs["reference"] = _outputs(module, model32(*xs32[0]))
        _set_tf32(precision == "tf32")
        try:
            outputs["torch_eager"] = _outputs(module, model(*xs[0]))
            parts["torch_eager"] = {**measure(lambda i: model(*xs[i % len(xs)]), clock, warmup, iters), **settings}
            log(f"  torch eager      {parts['torch_eager']['latency_ms']:9.3f} ms")
        except Exception as exc:        # keep the run: ours and the other reference still count
            parts["torch_eager"] = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
        if compile_mode is not None:
            parts["torch_compile"] = _measure_compiled(module, model, xs, compile_mode, clock, warmup, iters,
                                                       settings, outputs, log)
    _set_tf32(False)
    model = model32 = None
    torch._dynamo.reset()               # frees compiled graphs and their CUDA-graph pools
    if dev.type == "cuda":
        torch.cuda.empty_cache()        # leave the memory to the next run's engine
    return parts, outputs


def _measure_compiled(module, model, xs, mode, clock, warmup, iters, settings, outputs, log) -> dict:
    mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", None)

    def call(i):
        if mark_step is not None:
            mark_step()             # CUDA-graph trees: this call may overwrite the previous outputs
        return model_c(*xs[i % len(xs)])

    try:
        torch._dynamo.reset()       # a fresh compile per (batch, precision): no dynamic-shape recompiles
        model_c = torch.compile(model, mode=mode, dynamic=False)
        started = time.perf_counter()
        for i in range(3):          # compile, then the calls that record CUDA graphs
            call(i)
        clock.synchronize()
        compile_s = time.perf_counter() - started
        log(f"  torch.compile({mode}) ready in {compile_s:.1f} s")
        outputs["torch_compile"] = _outputs(module, call(0))
        return {"mode": mode, "compile_s": round(compile_s, 2),
                **measure(call, clock, warmup, iters), **settings}
    except Exception as exc:
        return {"mode": mode, "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
