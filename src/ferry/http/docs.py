"""OpenAPI descriptions and examples for the routes. The hot routes read raw bodies
(no pydantic on the infer path), so their schemas are declared here by hand."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ferry.http.scopes import declared_scope
from ferry.security.keys import Scope

ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            },
            "example": {"error": "unknown model 'digitz'"},
        }
    },
}

_PARAMETERS = {"type": "object", "additionalProperties": True}

_TENSOR_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1 is any size"},
    },
    "required": ["name", "datatype", "shape"],
}

_TENSOR_DATA = {
    "description": "Row-major values, flat or nested; BOOL as true/false, BYTES as strings.",
}

_REQUEST_INPUT = {
    "type": "object",
    "properties": {
        **_TENSOR_METADATA["properties"],  # type: ignore[dict-item]
        "parameters": {
            "type": "object",
            "properties": {
                "binary_data_size": {
                    "type": "integer",
                    "description": "The tensor's bytes follow the JSON (binary tensor extension).",
                }
            },
            "additionalProperties": True,
        },
        "data": _TENSOR_DATA,
    },
    "required": ["name", "datatype", "shape"],
}

INFER_REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Echoed in the response."},
        "parameters": {
            "type": "object",
            "properties": {
                "binary_data_output": {"type": "boolean", "description": "Return every output as binary."},
                "timeout": {"type": "integer", "description": "Queue deadline in microseconds."},
            },
            "additionalProperties": True,
        },
        "inputs": {"type": "array", "items": _REQUEST_INPUT, "minItems": 1},
        "outputs": {
            "type": "array",
            "description": "Outputs to return (default: all).",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data": {"type": "boolean"}},
                        "additionalProperties": True,
                    },
                },
                "required": ["name"],
            },
        },
    },
    "required": ["inputs"],
}

INFER_RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **_TENSOR_METADATA["properties"],  # type: ignore[dict-item]
                    "parameters": _PARAMETERS,
                    "data": _TENSOR_DATA,
                },
                "required": ["name", "datatype", "shape"],
            },
        },
    },
    "required": ["model_name", "outputs"],
}

_BINARY_NOTE = (
    "Binary tensor extension: the JSON header, then the raw little-endian tensor bytes. "
    "The Inference-Header-Content-Length header gives the JSON's length."
)

INFER_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": INFER_REQUEST_SCHEMA,
                "examples": {
                    "digits": {
                        "summary": "One 8x8 digit as 64 pixel values",
                        "value": {
                            "id": "req-1",
                            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}],
                        },
                    },
                    "select-output": {
                        "summary": "Only the label, in binary",
                        "value": {
                            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}],
                            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
                        },
                    },
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": _BINARY_NOTE,
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "format": "binary"},
                    "description": "One field per BYTES input, named after it; a field given several times is "
                    "several rows. For image models (their input is BYTES [-1]): "
                    "`curl -F image=@cat.png .../v2/models/m/infer`.",
                },
                "examples": {"image": {"summary": "An image upload", "value": {"image": "<the file>"}}},
            },
        },
    },
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer"},
            "description": _BINARY_NOTE,
        }
    ],
}

INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs; with binary outputs, JSON then raw bytes (see Inference-Header-Content-Length).",
        "content": {
            "application/json": {
                "schema": INFER_RESPONSE_SCHEMA,
                "example": {
                    "model_name": "digits",
                    "model_version": "1",
                    "id": "req-1",
                    "outputs": [
                        {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},
                    ],
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: ERROR,
    404: ERROR,
    413: ERROR,
    503: ERROR,
}


def _json(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


LIVE: dict[int | str, dict[str, Any]] = {200: _json("The server process answers", {"live": True})}

READY: dict[int | str, dict[str, Any]] = {
    200: _json("Every model this server should serve is loaded", {"ready": True}),
    503: _json(
        "Still loading, or a model failed to load (unless --ready-despite-failures), with Retry-After",
        {"error": "still loading: digits"},
    ),
}

MODEL_READY: dict[int | str, dict[str, Any]] = {
    200: _json("The model (version) answers requests", {"name": "digits", "ready": True}),
    400: ERROR,
    404: ERROR,
    503: ERROR,
}

SERVER_METADATA: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server name, version and supported extensions",
        "content": {
            "application/json": {"example": {"name": "ferry", "version": "0.1.0", "extensions": ["binary_tensor_data"]}}
        },
    }
}

MODEL_METADATA: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Model metadata",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR_METADATA},
                        "outputs": {"type": "array", "items": _TENSOR_METADATA},
                    },
                    "required": ["name", "platform", "inputs", "outputs"],
                },
                "example": {
                    "name": "digits",
                    "versions": ["1"],
                    "platform": "sklearn_skops",
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
                    "outputs": [
                        {"name": "label", "datatype": "INT64", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 10]},
                    ],
                },
            }
        },
    },
    400: ERROR,
    404: ERROR,
    503: ERROR,
}

CONFIG: dict[int | str, dict[str, Any]] = {
    200: {"description": "Triton-style model configuration", "content": {"application/json": {}}},
    404: ERROR,
    503: ERROR,
}

_DURATION = {"type": "object", "properties": {"count": {"type": "integer"}, "ns": {"type": "integer"}}}

STATS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Per model version counters (statistics extension)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"model_stats": {"type": "array", "items": {"type": "object"}}},
                },
                "example": {
                    "model_stats": [
                        {
                            "name": "digits",
                            "version": "1",
                            "last_inference": 1764000000000,
                            "inference_count": 12,
                            "execution_count": 5,
                            "inference_stats": {
                                k: {"count": 12, "ns": 3_400_000}
                                for k in (
                                    "success",
                                    "fail",
                                    "queue",
                                    "compute_input",
                                    "compute_infer",
                                    "compute_output",
                                    "cache_hit",
                                    "cache_miss",
                                )
                            },
                            "batch_stats": [
                                {
                                    "batch_size": 1,
                                    "compute_input": {"count": 3, "ns": 9000},
                                    "compute_infer": {"count": 3, "ns": 90000},
                                    "compute_output": {"count": 3, "ns": 6000},
                                }
                            ],
                        }
                    ]
                },
            }
        },
    },
    404: ERROR,
}

INDEX_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                "example": {"ready": True},
            }
        },
    }
}

LOAD_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"parameters": _PARAMETERS}},
                "example": {},
            }
        },
    }
}

INDEX: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every model in the repository with its state",
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
                            "reason": {"type": "string"},
                        },
                    },
                },
                "example": [{"name": "digits", "version": "1", "state": "READY", "reason": ""}],
            }
        },
    },
    400: ERROR,
}

EMPTY_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done (empty body)"},
    400: ERROR,
    404: ERROR,
}

V1_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "instances": {"type": "array", "items": {}, "description": "One entry per row"},
                        "inputs": {"description": "Columns: a value, or {input name: value}"},
                    },
                },
                "examples": {
                    "instances": {"summary": "Two rows", "value": {"instances": [[0.0] * 64, [1.0] * 64]}},
                    "named": {
                        "summary": "Rows with named inputs",
                        "value": {"instances": [{"input": [0.0] * 64}]},
                    },
                },
            }
        },
    }
}

V1_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One prediction per row",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"predictions": {"type": "array", "items": {}}}},
                "example": {"predictions": [{"label": 0, "probabilities": [0.98, 0.0, 0.02]}]},
            }
        },
    },
    400: ERROR,
    404: ERROR,
    413: ERROR,
    503: ERROR,
}

V1_MODEL: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The model's name and readiness",
        "content": {"application/json": {"example": {"name": "digits", "ready": True}}},
    },
    404: ERROR,
}


def _operation(
    summary: str, operation_id: str, request: dict[str, Any], responses: dict[int | str, Any], *path_params: str
) -> dict[str, Any]:
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}, "description": PATH_PARAMS[p]}
        for p in path_params
    ]
    parameters += request.get("parameters", [])
    return {
        "post": {
            "tags": ["inference" if operation_id.startswith("infer") else "v1"],
            "summary": summary,
            "operationId": operation_id,
            "parameters": parameters,
            "requestBody": request["requestBody"],
            "responses": {str(status): response for status, response in responses.items()},
        }
    }


PATH_PARAMS = {"name": "Model name", "version": "Model version, a positive integer"}

# The infer endpoints are plain ASGI (ferry.http.infer), so FastAPI cannot describe them.
INFER_PATHS: dict[str, dict[str, Any]] = {
    "/v2/models/{name}/infer": _operation("Inference", "infer", INFER_REQUEST, INFER_RESPONSES, "name"),
    "/v2/models/{name}/versions/{version}/infer": _operation(
        "Inference on one version", "infer_version", INFER_REQUEST, INFER_RESPONSES, "name", "version"
    ),
    "/v1/models/{name}:predict": _operation(
        "Predict (instances in, predictions out)", "predict", V1_REQUEST, V1_RESPONSES, "name"
    ),
}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_AUTH_ERRORS = {
    "401": {**ERROR, "description": "No API key, or an unknown, expired or revoked one"},
    "403": {**ERROR, "description": "The key lacks the scope, or may not use this model"},
    "429": {**ERROR, "description": "The key's rate limit is used up (see Retry-After)"},
}


def add_security(schema: dict[str, Any], routes: list[BaseRoute]) -> None:
    """Mark each operation with the scope it needs (``x-ferry-scope``, and a line in its
    description) and the key it takes, so Swagger UI's Authorize button works."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    needs: dict[tuple[str, str], Scope] = {(path, "post"): Scope.INFER for path in INFER_PATHS}
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            scope = declared_scope(route)
            if scope is not None:
                needs.update({(route.path_format, method.lower()): scope for method in route.methods or ()})
    for (path, method), scope in needs.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        operation["x-ferry-scope"] = scope.value
        note = f"Needs an API key with the `{scope.value}` scope."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
        operation.setdefault("responses", {}).update(_AUTH_ERRORS)


def validation_errors_are_400(schema: dict[str, Any]) -> None:
    """FastAPI documents request validation errors as 422 with its own body; Ferry answers
    them 400 with ``{"error": ...}`` like every other bad input (ferry.http.errors)."""
    for item in schema["paths"].values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {**ERROR, "description": "Invalid request"})
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
