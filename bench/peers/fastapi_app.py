"""Baseline (b): the FastAPI + onnxruntime service the tutorials show.

A pydantic model for the V2 JSON body, one request -> one ``session.run``, one uvicorn
process. Run with ``uvicorn bench.peers.fastapi_app:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from bench.peers.common import MODEL_NAMES, session

sessions: dict[str, ort.InferenceSession] = {}


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[InferInput]


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    outputs: list[InferOutput]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    for name in MODEL_NAMES:
        sessions[name] = session(name)
    yield
    sessions.clear()


app = FastAPI(lifespan=lifespan)


@app.get("/v2/health/ready")
def ready() -> dict[str, Any]:
    return {"ready": len(sessions) == len(MODEL_NAMES)}


@app.post("/v2/models/{model_name}/infer", response_model=InferResponse)
def infer(model_name: str, request: InferRequest) -> InferResponse:
    if model_name not in sessions:
        raise HTTPException(status_code=404, detail=f"unknown model {model_name}")
    model = sessions[model_name]
    feed = {i.name: np.array(i.data, dtype=np.float32).reshape(i.shape) for i in request.inputs}
    names = [o.name for o in model.get_outputs()]
    results = model.run(names, feed)
    outputs = [
        InferOutput(name=n, shape=list(r.shape), datatype="FP32", data=r.ravel().tolist())
        for n, r in zip(names, results, strict=True)
    ]
    return InferResponse(model_name=model_name, outputs=outputs)
