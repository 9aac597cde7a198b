"""The model's inputs, as the server describes them: ``GET /v2/models/MODEL`` over REST, the
ModelMetadata call over gRPC. Any failure here is a ``UsageError``: nothing was measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ferry.bench.options import Target, UsageError
from ferry.signature import TensorSpec

METADATA_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]


def fetch(target: Target, model: str, api_key: str | None) -> ModelMetadata:
    if target.protocol == "grpc":
        return _fetch_grpc(target, model, api_key)
    return _fetch_rest(target, model, api_key)


def parse(doc: Any, model: str) -> ModelMetadata:
    """A V2 model metadata document (REST JSON, or the gRPC answer as a dict)."""
    if not isinstance(doc, dict):
        raise UsageError(f"model {model!r}: the server's metadata is not a JSON object: {str(doc)[:200]}")
    listed = doc.get("inputs") or []  # MLServer leaves it out unless model-settings.json lists them
    if not isinstance(listed, list):
        raise UsageError(f"model {model!r}: the server's metadata has no list of inputs: {str(doc)[:200]}")
    inputs = []
    for item in listed:
        try:
            inputs.append(TensorSpec(str(item["name"]), str(item["datatype"]), tuple(int(d) for d in item["shape"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"model {model!r}: cannot use input {item!r} from the server's metadata: {exc}") from None
    return ModelMetadata(str(doc.get("name") or model), str(doc.get("platform") or ""), tuple(inputs))


def _fetch_rest(target: Target, model: str, api_key: str | None) -> ModelMetadata:
    from ferry.client import Client, ClientError

    client = Client(target.base_url, api_key, METADATA_TIMEOUT_S)
    try:
        doc = client.get(f"/v2/models/{quote(model, safe='')}")
    except ClientError as exc:
        raise UsageError(f"cannot read the metadata of model {model!r} from {target.base_url}: {exc.message}") from None
    return parse(doc, model)


def _fetch_grpc(target: Target, model: str, api_key: str | None) -> ModelMetadata:
    import grpc

    from ferry.grpc.protos import grpc_service_pb2 as pb
    from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc

    if target.tls:
        channel = grpc.secure_channel(target.address, grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(target.address)
    with channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            answer = stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model), metadata=call_metadata(api_key), timeout=METADATA_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            raise UsageError(
                f"cannot read the metadata of model {model!r} from {target.address} over gRPC: {details} ({code.name})"
            ) from None
    doc = {
        "name": answer.name,
        "platform": answer.platform,
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in answer.inputs],
    }
    return parse(doc, model)


def call_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The key as gRPC metadata, as Ferry, Triton's and KServe's gateways read it."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
