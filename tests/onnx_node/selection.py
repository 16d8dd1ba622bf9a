"""Which of onnx's backend node tests we run, and why the others are left out.

Selection is explicit in both directions: a node test runs when every op in its graph (nested
subgraphs included) is declared by the CPU backend; a test is left out only because one of its
ops is listed in UNDECLARED_OPS below with a reason. An op that appears in onnx's tests but in
neither place fails `test_every_node_test_op_is_accounted_for`, so nothing is dropped silently.
"""
from __future__ import annotations

import functools

import onnx

from workbench.backends.cpu import declared_ops

# op -> why the CPU backend does not declare it (yet)
UNDECLARED_OPS: dict[str, str] = {
    # training-only op (optimizer or loss); an inference engine does not run it
    **dict.fromkeys(["Adagrad", "Adam", "Momentum", "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"], 'training-only op (optimizer or loss); an inference engine does not run it'),
    # classical-ML domain (ai.onnx.ml), outside a neural-network engine
    **dict.fromkeys(["ArrayFeatureExtractor", "Binarizer", "LabelEncoder", "TreeEnsemble"], 'classical-ML domain (ai.onnx.ml), outside a neural-network engine'),
    # control flow: needs subgraph execution, planned with partial conversion
    **dict.fromkeys(["If", "Loop", "Scan"], 'control flow: needs subgraph execution, planned with partial conversion'),
    # sequence or optional types: the engine's tensors are dense tensors only
    **dict.fromkeys(["Optional", "OptionalGetElement", "OptionalHasElement", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceLength", "SequenceMap", "SplitToSequence"], "sequence or optional types: the engine's tensors are dense tensors only"),
    # string processing: not a tensor-accelerator workload
    **dict.fromkeys(["RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer"], 'string processing: not a tensor-accelerator workload'),
    # random generator: cannot match fixed reference data
    **dict.fromkeys(["Bernoulli", "RandomUniformLike"], 'random generator: cannot match fixed reference data'),
    # recurrent layer: planned (unrolled LSTM/GRU/RNN kernels)
    **dict.fromkeys(["GRU", "LSTM", "RNN"], 'recurrent layer: planned (unrolled LSTM/GRU/RNN kernels)'),
    # signal processing: planned
    **dict.fromkeys(["BlackmanWindow", "DFT", "HammingWindow", "HannWindow", "MelWeightMatrix", "STFT"], 'signal processing: planned'),
    # attention family added in opsets 23-26: planned with the attention fusion
    **dict.fromkeys(["Attention", "FlexAttention", "LinearAttention", "RotaryEmbedding", "SwiGLU", "CausalConvWithState", "TensorScatter"], 'attention family added in opsets 23-26: planned with the attention fusion'),
    # vision op with data-dependent sampling: planned
    **dict.fromkeys(["AffineGrid", "Col2Im", "DeformConv", "GridSample", "NonMaxSuppression", "RoiAlign"], 'vision op with data-dependent sampling: planned'),
    # image decoding: input pipeline, not inference
    **dict.fromkeys(["ImageDecoder"], 'image decoding: input pipeline, not inference'),
    # rare op: not yet implemented
    **dict.fromkeys(["BitCast", "CumProd", "Det"], 'rare op: not yet implemented'),
}

# node test name -> why it fails although its ops are declared
KNOWN_FAILURES: dict[str, str] = {
    **dict.fromkeys(["test_training_dropout", "test_training_dropout_default", "test_training_dropout_mask",
                     "test_training_dropout_default_mask"],
                    "Dropout in training mode draws a random mask; the reference data used another generator"),
    **dict.fromkeys(["test_not_2d", "test_not_3d", "test_not_4d"],
                    "model declares opset 1, below the supported minimum of 7"),
    **dict.fromkeys(["test_identity_opt", "test_identity_sequence"],
                    "optional / sequence-typed graph input: the engine takes dense tensors only"),
    "test_mvn": "onnx's strict shape inference rejects the op's own function body (a Constant it builds)",
}


def ops_in(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found |= ops_in(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    found |= ops_in(g)
    return found


@functools.lru_cache(maxsize=1)
def node_test_ops() -> dict[str, frozenset[str]]:
    """node test name (without the _cpu suffix) -> ops its model uses."""
    from onnx.backend.test.loader import load_model_tests
    return {case.name: frozenset(ops_in(case.model.graph)) for case in load_model_tests(kind="node")}


def selected_tests() -> list[str]:
    declared = set(declared_ops())
    return sorted(name for name, ops in node_test_ops().items() if ops and ops <= declared)


def excluded_tests() -> dict[str, list[str]]:
    """test name -> its undeclared ops (the reason it is left out)."""
    declared = set(declared_ops())
    return {name: sorted(ops - declared) for name, ops in node_test_ops().items() if not ops or not ops <= declared}
