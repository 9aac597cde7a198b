"""The benchmark's models, built offline: an MLP trained on scikit-learn's digits
(64 features, overhead-bound) and a small ResNet-like CNN on 3x64x64 inputs with random
weights (compute-bound). Both are ONNX graphs with a dynamic batch dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_mlp(path: Path) -> float:
    """Train a 64-128-64-10 MLP on the digits and write it as ONNX; returns held-out accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0
    )
    mlp = MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=400, random_state=0).fit(x_train, y_train)
    accuracy = float(mlp.score(x_test, y_test))
    nodes, inits = [], []
    current = "input"
    # The model takes raw 0-16 pixel values: scale inside the graph.
    inits.append(numpy_helper.from_array(np.array(1 / 16.0, dtype=np.float32), "scale"))
    nodes.append(helper.make_node("Mul", [current, "scale"], ["scaled"]))
    current = "scaled"
    layers = list(zip(mlp.coefs_, mlp.intercepts_, strict=True))
    for i, (weights, bias) in enumerate(layers):
        inits.append(numpy_helper.from_array(weights.astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"]))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i}"]))
            current = f"h{i}"
    nodes.append(helper.make_node("Softmax", [f"z{len(layers) - 1}"], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    _save(graph, path)
    return accuracy


class _Graph:
    def __init__(self, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._rng = np.random.default_rng(seed)
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def conv(self, x: str, c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> str:
        w = self._name("w")
        b = self._name("b")
        scale = np.sqrt(2.0 / (c_in * 9))
        self.inits.append(
            numpy_helper.from_array((self._rng.standard_normal((c_out, c_in, 3, 3)) * scale).astype(np.float32), w)
        )
        self.inits.append(numpy_helper.from_array(np.zeros(c_out, dtype=np.float32), b))
        out = self._name("conv")
        self.nodes.append(
            helper.make_node("Conv", [x, w, b], [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])
        )
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        out = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def residual(self, x: str, channels: int) -> str:
        h = self.conv(x, channels, channels)
        h = self.conv(h, channels, channels, relu=False)
        out = self._name("add")
        self.nodes.append(helper.make_node("Add", [x, h], [out]))
        return self.relu(out)


def build_cnn(path: Path, seed: int = 0) -> Path:
    """Stem 3->32 (stride 2), two residual blocks, 32->64 (stride 2), two residual
    blocks, global average pooling, a 10-way linear layer: ~80 M multiply-adds per image."""
    g = _Graph(seed)
    x = g.conv("input", 3, 32, stride=2)
    x = g.residual(x, 32)
    x = g.residual(x, 32)
    x = g.conv(x, 32, 64, stride=2)
    x = g.residual(x, 64)
    x = g.residual(x, 64)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    g.inits.append(numpy_helper.from_array((g._rng.standard_normal((10, 64)) * 0.1).astype(np.float32), "fc_w"))
    g.inits.append(numpy_helper.from_array(np.zeros(10, dtype=np.float32), "fc_b"))
    g.nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(
        g.nodes,
        "resnet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=g.inits,
    )
    return _save(graph, path)
