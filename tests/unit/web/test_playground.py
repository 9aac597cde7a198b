"""ferry.web.playground: the widget the playground shows for an input, guessed from its
datatype and shape, or chosen by config.yaml's ``playground`` hints."""

from __future__ import annotations

import pytest

from ferry.config import PlaygroundInput, parse_config
from ferry.errors import ConfigError
from ferry.signature import TensorSpec
from ferry.web.playground import MAX_EXAMPLE_ELEMENTS, MAX_FORM_FEATURES, widget


def _spec(*shape: int, datatype: str = "FP32") -> TensorSpec:
    return TensorSpec("x", datatype, shape)


def test_text_for_bytes() -> None:
    assert widget(_spec(-1, datatype="BYTES"), False) == {
        "name": "x",
        "datatype": "BYTES",
        "shape": [-1],
        "kind": "text",
        "batch_shape": [1],
    }
    # Even when its shape would make a canvas.
    assert widget(_spec(-1, 64, datatype="BYTES"), False)["kind"] == "text"


def test_image_when_a_preprocess_step_decodes_it() -> None:
    described = widget(_spec(-1, 3, 224, 224), True)
    assert described["kind"] == "image"
    assert described["batch_shape"] == [1, 3, 224, 224]
    assert described["shape"] == [-1, 3, 224, 224]
    assert widget(_spec(-1, datatype="BYTES"), True)["kind"] == "image"  # an encoded picture


@pytest.mark.parametrize(
    ("shape", "side"),
    [
        ((-1, 64), 8),  # scikit-learn's 8x8 digits, flattened
        ((-1, 100), 10),
        ((-1, 1, 28, 28), 28),  # MNIST, NCHW
        ((-1, 28, 28), 28),
        ((-1, 64, 64), 64),
    ],
)
def test_canvas_for_small_square_grayscale_inputs(shape: tuple[int, ...], side: int) -> None:
    described = widget(_spec(*shape), False)
    assert described["kind"] == "canvas"
    assert (described["height"], described["width"]) == (side, side)
    assert described["range"] == [0.0, 1.0]
    assert described["batch_shape"] == [1, *shape[1:]]


@pytest.mark.parametrize(
    "shape",
    [
        (-1, 16),  # 4x4: too small for a canvas
        (-1, 28, 30),  # not square
        (-1, 65, 65),  # too large
        (-1, 3, 28, 28),  # colour
        (-1, 2, 28, 28),
    ],
)
def test_no_canvas_for_other_shapes(shape: tuple[int, ...]) -> None:
    assert widget(_spec(*shape), False)["kind"] != "canvas"


def test_form_with_a_field_per_feature() -> None:
    described = widget(_spec(-1, 4), False)
    assert described["kind"] == "form"
    assert described["features"] == ["feature 0", "feature 1", "feature 2", "feature 3"]
    assert described["batch_shape"] == [1, 4]
    assert widget(_spec(-1, 16), False)["features"] == [f"feature {i}" for i in range(16)]
    assert widget(_spec(-1, MAX_FORM_FEATURES), False)["kind"] == "form"
    assert widget(_spec(-1, MAX_FORM_FEATURES + 1), False)["kind"] == "json"
    assert widget(_spec(-1, 4, datatype="INT64"), False)["kind"] == "form"


def test_json_with_zeros_or_no_example() -> None:
    big = widget(_spec(-1, 3, 224, 224), False)
    assert big["kind"] == "json"
    assert big["batch_shape"] == [1, 3, 224, 224]
    assert big["example"] is None  # too big to pre-fill

    small = widget(_spec(-1, 2, 3, 5), False)
    assert small["kind"] == "json"
    assert small["example"] == [[[[0] * 5] * 3] * 2]
    assert widget(_spec(-1, 49), False)["example"] == [[0] * 49]  # 7x7: no canvas, too wide for a form
    assert widget(_spec(-1), False)["example"] == [0]
    assert widget(_spec(-1, -1), False) == {
        "name": "x",
        "datatype": "FP32",
        "shape": [-1, -1],
        "kind": "json",
        "batch_shape": [1, 1],
        "example": [[0]],
    }
    # At the limit a full example, one element past it none.
    assert widget(_spec(-1, 2, MAX_EXAMPLE_ELEMENTS // 2), False)["example"] is not None
    assert widget(_spec(-1, 1, MAX_EXAMPLE_ELEMENTS + 1), False)["example"] is None


def test_batch_shape_takes_any_size_dimensions_as_one() -> None:
    assert widget(_spec(-1, -1, 3), False)["batch_shape"] == [1, 1, 3]
    assert widget(_spec(2, 4), False)["batch_shape"] == [2, 4]  # fixed dimensions kept
    assert widget(_spec(-1, 3, -1, -1), True)["batch_shape"] == [1, 3, 1, 1]


def test_canvas_hints_set_range_and_size() -> None:
    ranged = widget(_spec(-1, 64), False, PlaygroundInput(range=(0.0, 16.0)))
    assert ranged["kind"] == "canvas"
    assert (ranged["height"], ranged["width"]) == (8, 8)  # the guessed size is kept
    assert ranged["range"] == [0.0, 16.0]

    sized = widget(_spec(-1, 1, 28, 28), False, PlaygroundInput(size=(14, 14), range=(1.0, -1.0)))
    assert (sized["height"], sized["width"]) == (14, 14)
    assert sized["range"] == [1.0, -1.0]

    # A canvas asked for on an input that would be a form.
    forced = widget(_spec(-1, 12), False, PlaygroundInput(widget="canvas", size=(3, 4)))
    assert forced["kind"] == "canvas"
    assert (forced["height"], forced["width"]) == (3, 4)
    assert forced["range"] == [0.0, 1.0]
    assert "features" not in forced


def test_form_hints_name_the_features() -> None:
    names = ["sepal length", "sepal width", "petal length", "petal width"]
    described = widget(_spec(-1, 4), False, PlaygroundInput(features=names))
    assert described["kind"] == "form" and described["features"] == names
    # Feature names mean nothing to another widget.
    canvas = widget(_spec(-1, 64), False, PlaygroundInput(features=["a"]))
    assert canvas["kind"] == "canvas" and "features" not in canvas
    # A form asked for on an input that would be a canvas, with its names.
    wide = [f"pixel {i}" for i in range(64)]
    forced = widget(_spec(-1, 64), False, PlaygroundInput(widget="form", features=wide))
    assert forced["kind"] == "form" and forced["features"] == wide
    assert "height" not in forced and "range" not in forced


def test_a_hint_may_force_json() -> None:
    forced = widget(_spec(-1, 4), False, PlaygroundInput(widget="json"))
    assert forced["kind"] == "json"
    assert forced["batch_shape"] == [1, 4]
    assert "features" not in forced
    image = widget(_spec(-1, 3, 8, 8), True, PlaygroundInput(widget="json"))
    assert image["kind"] == "json" and image["batch_shape"] == [1, 3, 8, 8]
    # Naming the widget it would have guessed anyway changes nothing.
    assert widget(_spec(-1, 4), False, PlaygroundInput(widget="form")) == widget(_spec(-1, 4), False)


def test_hints_come_from_config_yaml() -> None:
    config = parse_config(
        {"playground": {"inputs": {"x": {"widget": "canvas", "size": [8, 8], "range": [0, 16]}}}}, "config.yaml"
    )
    hint = config.playground.inputs["x"]
    described = widget(_spec(-1, 64), False, hint)
    assert described["range"] == [0.0, 16.0] and (described["height"], described["width"]) == (8, 8)
    with pytest.raises(ConfigError, match="widget"):
        parse_config({"playground": {"inputs": {"x": {"widget": "slider"}}}}, "config.yaml")
    with pytest.raises(ConfigError, match="colour"):
        parse_config({"playground": {"inputs": {"x": {"colour": "red"}}}}, "config.yaml")
