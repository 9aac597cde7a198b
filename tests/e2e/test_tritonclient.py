"""tritonclient.http (and its asyncio twin) against a real ``ferry serve`` process:
the Triton client must work unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.e2e.server import Server


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(url=server.address, network_timeout=30)
    yield triton
    triton.close()


def make_input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def add_sub_inputs(rows: int = 1, binary: bool = True) -> tuple[list[httpclient.InferInput], np.ndarray, np.ndarray]:
    a = np.arange(rows * 16, dtype=np.float32).reshape(rows, 16)
    b = np.full((rows, 16), 0.5, dtype=np.float32)
    return [make_input("INPUT0", a, "FP32", binary), make_input("INPUT1", b, "FP32", binary)], a, b


def assert_still_serving(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    inputs, a, b = add_sub_inputs()
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """BYTES come back as ``bytes`` from binary outputs and as ``str`` from JSON ones."""
    flat = [x.encode() if isinstance(x, str) else bytes(x) for x in array.reshape(-1)]
    return np.array(flat, dtype=object).reshape(array.shape)


# -- health and metadata --------------------------------------------------------------


def test_server_live_and_ready(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_server_metadata()
    assert metadata["name"] == "ferry"
    assert metadata["version"]
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(metadata["extensions"])


def test_model_metadata(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub")
    assert metadata["name"] == "add_sub"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 16]},
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["OUTPUT0", "OUTPUT1"]


def test_model_metadata_lists_versions(client: httpclient.InferenceServerClient) -> None:
    assert client.get_model_metadata("scale")["versions"] == ["1", "2"]
    assert client.get_model_metadata("scale", model_version="1")["versions"] == ["1"]


def test_model_config(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("add_sub")
    assert config["name"] == "add_sub"
    assert config["max_batch_size"] > 0
    # With batching on, Triton's dims leave out the batch dimension.
    assert config["input"][0] == {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]}
    assert {o["name"] for o in config["output"]} == {"OUTPUT0", "OUTPUT1"}
    assert client.get_model_config("identity_bytes")["input"][0]["data_type"] == "TYPE_STRING"


def test_model_ready_with_versions(client: httpclient.InferenceServerClient) -> None:
    assert client.is_model_ready("scale")
    assert client.is_model_ready("scale", model_version="1")
    assert client.is_model_ready("scale", model_version="2")
    assert not client.is_model_ready("scale", model_version="3")
    assert not client.is_model_ready("no_such_model")


# -- inference: datatypes, JSON and binary ----------------------------------------------

SAMPLES: dict[str, np.ndarray] = {
    "FP32": np.array([[1.5, -2.25, 3.0e-7, 1.0e30]], dtype=np.float32),
    "INT32": np.array([[0, -1, 2**31 - 1, -(2**31)], [5, 6, 7, 8]], dtype=np.int32),
    "INT64": np.array([[2**62, -(2**62), 2**40 + 1, 0]], dtype=np.int64),
    "BOOL": np.array([[True, False, True], [False, False, True]], dtype=bool),
    "BYTES": np.array([[b"hello", b"", "caf\u00e9".encode(), b"a b"]], dtype=object),
    "UINT8": np.array([[0, 1, 254, 255]], dtype=np.uint8),
    "FP16": np.array([[0.5, -1.0, 65504.0, 0.0009765625]], dtype=np.float16),
}
# FP16 has no JSON form in tritonclient, so it is only sent as binary.
CASES = [
    pytest.param(
        datatype,
        binary_in,
        binary_out,
        id=f"{datatype}-in_{'bin' if binary_in else 'json'}-out_{'bin' if binary_out else 'json'}",
    )
    for datatype in SAMPLES
    for binary_in in (True, False)
    for binary_out in (True, False)
    if datatype != "FP16" or (binary_in and binary_out)
]


@pytest.mark.parametrize(("datatype", "binary_in", "binary_out"), CASES)
def test_infer_round_trips_values(
    client: httpclient.InferenceServerClient, datatype: str, binary_in: bool, binary_out: bool
) -> None:
    data = SAMPLES[datatype]
    result = client.infer(
        f"identity_{datatype.lower()}",
        [make_input("INPUT0", data, datatype, binary_in)],
        outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)],
    )
    output = result.get_output("OUTPUT0")
    assert output["datatype"] == datatype
    assert output["shape"] == list(data.shape)
    # The response says which encoding the server chose for the output.
    assert ("binary_data_size" in output.get("parameters", {})) is binary_out
    got = result.as_numpy("OUTPUT0")
    assert got is not None
    assert got.shape == data.shape
    if datatype == "BYTES":
        np.testing.assert_array_equal(as_bytes_array(got), data)
    else:
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)


def test_infer_add_sub_computes(client: httpclient.InferenceServerClient) -> None:
    inputs, a, b = add_sub_inputs(rows=3)
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["model_name"] == "add_sub"
    assert response["model_version"] == "1"


def test_output_selection(client: httpclient.InferenceServerClient) -> None:
    inputs, a, b = add_sub_inputs()
    result = client.infer("add_sub", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_request_id_is_echoed(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = add_sub_inputs()
    result = client.infer("add_sub", inputs, request_id="req-42/\u00e9")
    assert result.get_response()["id"] == "req-42/\u00e9"
    # No id asked for: the request id, which the response header carries too.
    answered = client.infer("add_sub", inputs, headers={"X-Request-ID": "trace-9"}).get_response()
    assert answered["id"] == "trace-9"


def test_python_model_bytes(client: httpclient.InferenceServerClient) -> None:
    text = np.array([b"ferry", b"hello world"], dtype=object)
    result = client.infer("upper", [make_input("text", text, "BYTES")])
    np.testing.assert_array_equal(as_bytes_array(result.as_numpy("upper")), [b"FERRY", b"HELLO WORLD"])
    np.testing.assert_array_equal(result.as_numpy("length"), [5, 11])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_request_compression(client: httpclient.InferenceServerClient, algorithm: str, binary: bool) -> None:
    inputs, a, b = add_sub_inputs(rows=4, binary=binary)
    result = client.infer(
        "add_sub",
        inputs,
        outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


# -- versions -------------------------------------------------------------------------


def scale(client: httpclient.InferenceServerClient, version: str) -> tuple[np.ndarray, str]:
    x = np.array([[1.0, 2.0, 3.0, -4.0]], dtype=np.float32)
    result = client.infer("scale", [make_input("x", x, "FP32")], model_version=version)
    y = result.as_numpy("y")
    assert y is not None
    return y / x, result.get_response()["model_version"]


def test_versions_are_told_apart(client: httpclient.InferenceServerClient) -> None:
    factor, version = scale(client, "1")
    np.testing.assert_array_equal(factor, 1.0)
    assert version == "1"
    factor, version = scale(client, "2")
    np.testing.assert_array_equal(factor, 2.0)
    assert version == "2"


def test_unversioned_request_uses_latest(client: httpclient.InferenceServerClient) -> None:
    factor, version = scale(client, "")
    np.testing.assert_array_equal(factor, 2.0)
    assert version == "2"


# -- repository extension -------------------------------------------------------------


def index_states(client: httpclient.InferenceServerClient) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["name"], e["version"]): e for e in client.get_model_repository_index()}


def test_repository_index(client: httpclient.InferenceServerClient) -> None:
    states = index_states(client)
    assert {("add_sub", "1"), ("scale", "1"), ("scale", "2"), ("digits", "1"), ("upper", "1")} <= set(states)
    assert {("identity_" + d.lower(), "1") for d in SAMPLES} <= set(states)
    # Every model the test repository holds loads.
    assert [e for e in states.values() if e["state"] != "READY"] == []


def test_unload_then_load(client: httpclient.InferenceServerClient) -> None:
    data = np.array([[1.0, 2.0]], dtype=np.float64)
    name = "identity_fp64"
    client.unload_model(name)
    try:
        assert not client.is_model_ready(name)
        assert not client.is_model_ready(name, model_version="1")
        assert index_states(client)[(name, "1")]["state"] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException) as info:
            client.infer(name, [make_input("INPUT0", data, "FP64")])
        assert info.value.status() == "404"
        # Unloading one model leaves the others alone.
        assert client.is_model_ready("identity_fp32")
    finally:
        client.load_model(name)
    assert client.is_model_ready(name)
    assert index_states(client)[(name, "1")]["state"] == "READY"
    result = client.infer(name, [make_input("INPUT0", data, "FP64")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_load_unknown_model(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.load_model("no_such_model")
    assert info.value.status() == "404"


# -- statistics -----------------------------------------------------------------------


def model_stats(client: httpclient.InferenceServerClient, name: str) -> dict[str, Any]:
    stats = client.get_inference_statistics(name, model_version="1")["model_stats"]
    assert len(stats) == 1
    assert (stats[0]["name"], stats[0]["version"]) == (name, "1")
    entry: dict[str, Any] = stats[0]
    return entry


def test_statistics_count_what_was_sent(client: httpclient.InferenceServerClient) -> None:
    name = "identity_int8"
    before = model_stats(client, name)
    rows = [1, 2, 3]
    for n in rows:
        data = np.full((n, 5), n, dtype=np.int8)
        client.infer(name, [make_input("INPUT0", data, "INT8")])
    with pytest.raises(InferenceServerException):
        client.infer(name, [make_input("INPUT0", np.zeros((1, 2), dtype=np.int16), "INT16")])
    after = model_stats(client, name)

    def delta(*path: str) -> int:
        old: Any = before
        new: Any = after
        for key in path:
            old, new = old[key], new[key]
        return int(new) - int(old)

    assert delta("inference_stats", "success", "count") == len(rows)
    assert delta("inference_stats", "fail", "count") == 1
    assert delta("inference_count") == sum(rows)
    assert delta("execution_count") == len(rows)
    assert delta("inference_stats", "compute_infer", "count") == len(rows)
    assert delta("inference_stats", "success", "ns") > 0
    assert after["last_inference"] > 0
    # Every loaded version is listed when no model is named.
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} >= {(name, "1"), ("scale", "1"), ("scale", "2")}


# -- errors ---------------------------------------------------------------------------


def expect_error(status: str, fragment: str, call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    assert info.value.status() == status, str(info.value)
    assert fragment in (info.value.message() or ""), str(info.value)
    return info.value


def test_unknown_model(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = add_sub_inputs()
    expect_error("404", "no_such_model", client.infer, "no_such_model", inputs)
    expect_error("404", "no_such_model", client.get_model_metadata, "no_such_model")
    expect_error("404", "no_such_model", client.get_model_config, "no_such_model")
    assert_still_serving(client)


def test_unknown_version(client: httpclient.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    expect_error("404", "version 7", client.infer, "scale", [make_input("x", x, "FP32")], model_version="7")
    assert_still_serving(client)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_datatype(client: httpclient.InferenceServerClient, binary: bool) -> None:
    a = np.ones((1, 16), dtype=np.int32)
    inputs = [make_input("INPUT0", a, "INT32", binary), make_input("INPUT1", a, "INT32", binary)]
    expect_error("400", "datatype INT32", client.infer, "add_sub", inputs)
    assert_still_serving(client)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_shape(client: httpclient.InferenceServerClient, binary: bool) -> None:
    a = np.ones((1, 8), dtype=np.float32)
    inputs = [make_input("INPUT0", a, "FP32", binary), make_input("INPUT1", a, "FP32", binary)]
    expect_error("400", "shape", client.infer, "add_sub", inputs)
    assert_still_serving(client)


def test_unknown_input(client: httpclient.InferenceServerClient) -> None:
    inputs, a, _ = add_sub_inputs()
    inputs.append(make_input("INPUT2", a, "FP32"))
    expect_error("400", "unknown input 'INPUT2'", client.infer, "add_sub", inputs)
    assert_still_serving(client)


def test_missing_input(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = add_sub_inputs()
    expect_error("400", "INPUT1", client.infer, "add_sub", inputs[:1])
    assert_still_serving(client)


def test_unknown_output(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = add_sub_inputs()
    outputs = [httpclient.InferRequestedOutput("OUTPUT9")]
    expect_error("400", "unknown output 'OUTPUT9'", client.infer, "add_sub", inputs, outputs=outputs)
    assert_still_serving(client)


# -- asyncio client -------------------------------------------------------------------


def test_async_client(server: Server) -> None:
    async def scenario() -> list[np.ndarray]:
        async with aioclient.InferenceServerClient(url=server.address) as triton:
            assert await triton.is_server_live()
            assert await triton.is_server_ready()
            assert await triton.is_model_ready("scale", model_version="1")
            assert (await triton.get_model_metadata("scale"))["versions"] == ["1", "2"]

            async def one(i: int) -> np.ndarray:
                x = np.full((1, 4), i, dtype=np.float32)
                tensor = aioclient.InferInput("x", [1, 4], "FP32")
                tensor.set_data_from_numpy(x)
                result = await triton.infer("scale", [tensor], model_version="2")
                y = result.as_numpy("y")
                assert y is not None
                return y

            results: list[np.ndarray] = await asyncio.gather(*(one(i) for i in range(8)))
            with pytest.raises(InferenceServerException) as info:
                await triton.get_model_metadata("no_such_model")
            assert info.value.status() == "404"
            return results

    results = asyncio.run(scenario())
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 4), 2.0 * i, dtype=np.float32))
