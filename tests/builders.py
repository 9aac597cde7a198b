"""Test models built on the spot: small ONNX graphs with onnx.helper, scikit-learn on
its bundled data sets, TorchScript/torch.export modules and Python models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def add_sub_onnx(path: Path, datatype: str = "FP32", width: int = 16) -> Path:
    """Triton's classic example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1,
    each [-1, width]."""
    t = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [
            helper.make_tensor_value_info("INPUT0", t, ["batch", width]),
            helper.make_tensor_value_info("INPUT1", t, ["batch", width]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", t, ["batch", width]),
            helper.make_tensor_value_info("OUTPUT1", t, ["batch", width]),
        ],
    )
    return _save(graph, path)


def identity_onnx(path: Path, datatype: str, shape: list[int | str] | None = None) -> Path:
    """OUTPUT0 = INPUT0 for any datatype (BYTES is an ONNX string tensor)."""
    t = ONNX_TYPES[datatype]
    dims = shape if shape is not None else ["batch", "n"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", t, dims)],
        [helper.make_tensor_value_info("OUTPUT0", t, dims)],
    )
    return _save(graph, path)


def scale_onnx(path: Path, factor: float, width: int = 4) -> Path:
    """y = x * factor on FP32 [-1, width]: versions of one model can be told apart."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])],
    )
    return _save(graph, path)


def external_data_onnx(path: Path, location: str) -> Path:
    """scale_onnx with its factor in an external data file at ``location`` (relative to the
    model's folder): onnxruntime refuses one outside the folder, and names the paths."""
    factor = helper.make_tensor("factor", TensorProto.FLOAT, [], [2.0])
    factor.data_location = TensorProto.EXTERNAL
    factor.ClearField("float_data")
    for key, value in {"location": location, "offset": "0", "length": "4"}.items():
        entry = factor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[factor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())  # not onnx.save: it would look for the data
    return path


def digits_skops(path: Path) -> Path:
    """A logistic regression on scikit-learn's bundled digits, saved with skops."""
    import skops.io as sio
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    model = LogisticRegression(max_iter=500).fit(digits.data[:1000], digits.target[:1000])
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    return path


def iris_joblib(path: Path) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    model = DecisionTreeClassifier(random_state=0).fit(iris.data, iris.target_names[iris.target])
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def digits_sample(rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data[1000 : 1000 + rows].astype(np.float32), digits.target[1000 : 1000 + rows]


PYTHON_MODEL = '''
import numpy as np

import ferry
from ferry.signature import TensorSpec


class Upper(ferry.Model):
    """Upper-cases text and reports its length."""

    inputs = [TensorSpec("text", "BYTES", (-1,))]
    outputs = [TensorSpec("upper", "BYTES", (-1,)), TensorSpec("length", "INT64", (-1,))]
    batchable = True

    def load(self):
        self.suffix = (self.path / "suffix.txt").read_text().strip() if (self.path / "suffix.txt").exists() else ""

    def predict(self, inputs):
        texts = [t.decode("utf-8") for t in inputs["text"]]
        upper = np.array([(t.upper() + self.suffix).encode() for t in texts], dtype=object)
        length = np.array([len(t) for t in texts], dtype=np.int64)
        return {"upper": upper, "length": length}
'''


def python_model(directory: Path, source: str = PYTHON_MODEL) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.py"
    path.write_text(source)
    return path


def repository(root: Path) -> Path:
    """A model repository with one model of each kind the e2e tests need."""
    add_sub_onnx(root / "add_sub" / "1" / "model.onnx")
    for datatype in ("FP32", "FP16", "INT32", "INT64", "BOOL", "BYTES", "UINT8", "INT8", "FP64"):
        identity_onnx(root / f"identity_{datatype.lower()}" / "1" / "model.onnx", datatype)
    scale_onnx(root / "scale" / "1" / "model.onnx", 1.0)
    scale_onnx(root / "scale" / "2" / "model.onnx", 2.0)
    digits_skops(root / "digits" / "1" / "model.skops")
    python_model(root / "upper" / "1")
    return root


def colour_classifier_onnx(path: Path, size: int = 8, channels: int = 3, layout: str = "NCHW") -> Path:
    """An "image classifier" without training: logits = the mean of each colour channel,
    so a red picture is class 0, green 1, blue 2. Input ``image`` FP32, [N, C, H, W] or
    [N, H, W, C]; output ``logits`` [N, C]."""
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    dims: list[int | str] = ["batch", channels, size, size] if layout == "NCHW" else ["batch", size, size, channels]
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [2], axes)),
            helper.make_node("ReduceMean", ["image", "axes"], ["logits"], keepdims=0),
        ],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", channels])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 12), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """An encoded picture of one colour."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(buffer, format=fmt)
    return buffer.getvalue()


def skops_zip_bomb(path: Path, elements: int = 200_000_000) -> Path:
    """A valid .skops logistic regression whose coefficients, a few MB compressed,
    decompress to ``elements`` float64 zeros (1.6 GB by default). Written in chunks:
    building it needs no such memory."""
    import zipfile

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    small = path.with_suffix(".small")
    sio.dump(model, small)
    chunk = np.zeros(1 << 22)
    with zipfile.ZipFile(small) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in source.infolist():
            data = source.read(item)
            if not item.filename.endswith(".npy") or np.load(io.BytesIO(data)).shape != (1, 4):
                bomb.writestr(item, data)
                continue
            with bomb.open(item.filename, "w", force_zip64=True) as npy:  # the coefficients
                np.lib.format.write_array_header_1_0(
                    npy, {"descr": "<f8", "fortran_order": False, "shape": (1, elements)}
                )
                for start in range(0, elements, chunk.size):
                    npy.write(chunk[: min(chunk.size, elements - start)].tobytes())
    small.unlink()
    return path


def memory_bomb_onnx(path: Path, elements: tuple[int, ...] = (1024, 1024, 1024)) -> Path:
    """A 200-byte graph that fills a tensor of ``elements`` float32 ones (4 GiB by
    default) and sums it: y = x + sum."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [len(elements)], list(elements))
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[shape],
    )
    return _save(graph, path)


def shape_driven_onnx(path: Path) -> Path:
    """A graph whose tensor sizes follow its input's values: y = ones(shape).sum(). A
    request of three numbers can ask for any amount of memory."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_driven",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    return _save(graph, path)
