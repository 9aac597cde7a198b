"""``ferry bench URL MODEL``: read the model's metadata, build the request once, run each
concurrency level, print the table, write CSV/JSON. Exit codes: 0 when every request
succeeded, 1 when any failed, 2 when the run could not start (a usage error)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ferry.bench import metadata, report
from ferry.bench.driver import Driver
from ferry.bench.options import Target, UsageError, target
from ferry.bench.requests import InferInputs, binary_body, grpc_message, json_body, load_input_data, random_inputs
from ferry.bench.runner import progress_stream, run_level
from ferry.client import API_KEY_ENV


def run(args: argparse.Namespace) -> int:
    try:
        where = target(args.url, args.protocol)
    except ValueError as exc:
        return _usage(str(exc))
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    levels: list[report.LevelResult] = []
    try:
        _check_outputs(args.csv, args.json)
        if args.input_data is not None and args.batch is not None:
            raise UsageError("--batch does not apply to --input-data: the file's shapes are sent as they are")
        model = metadata.fetch(where, args.model, api_key)
        if args.input_data is not None:
            inputs = load_input_data(args.input_data, model.inputs)
        else:
            inputs = random_inputs(model.inputs, args.batch or 1)
        driver = make_driver(where, args.model, inputs, api_key)
    except UsageError as exc:
        return _usage(str(exc))
    print(_title(args, where, inputs), flush=True)
    print(report.table_header(), flush=True)
    try:
        _run_loop(lambda: _run_levels(driver, args, inputs, levels))
    except KeyboardInterrupt:
        print("ferry: interrupted; the levels above are complete", file=sys.stderr)
        _write_outputs(args, where, inputs, levels)
        return 130
    for line in report.failure_lines(levels):
        print(line)
    for line in report.busy_client_lines(levels):
        print(f"warning: {line}", file=sys.stderr)
    _write_outputs(args, where, inputs, levels)
    return 1 if any(level.errors for level in levels) else 0


def make_driver(where: Target, model: str, inputs: InferInputs, api_key: str | None) -> Driver:
    """The protocol's driver, holding the one request every worker sends."""
    if where.protocol == "grpc":
        from ferry.bench.grpc_driver import GrpcDriver

        return GrpcDriver(where, grpc_message(inputs, model), api_key)
    from ferry.bench.rest_driver import RestDriver

    body = binary_body(inputs) if where.protocol == "rest-binary" else json_body(inputs)
    return RestDriver(where, model, body, api_key)


async def _run_levels(
    driver: Driver, args: argparse.Namespace, inputs: InferInputs, levels: list[report.LevelResult]
) -> None:
    progress = progress_stream()
    for concurrency in args.concurrency:
        level = await run_level(driver, concurrency, args.warmup, args.duration, inputs.rows, progress)
        levels.append(level)
        print(report.table_row(level), flush=True)


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """uvloop when it is installed (it comes with uvicorn[standard]): measured on REST at
    concurrency 16, the client spent about 20 us of CPU per request on it, 30 on asyncio's
    own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _title(args: argparse.Namespace, where: Target, inputs: InferInputs) -> str:
    tensors = ", ".join(f"{t.name} {t.datatype} {list(t.array.shape)}" for t in inputs.tensors)
    source = f"from {args.input_data}" if args.input_data is not None else "random"
    address = where.address if where.protocol == "grpc" else where.base_url
    return (
        f"ferry bench: model {args.model} at {address} over {where.protocol}, {inputs.rows} row(s) per request "
        f"({source}: {tensors}); {args.duration:g} s per level after {args.warmup:g} s of warm-up"
    )


def _check_outputs(*paths: Path | None) -> None:
    """Refuse before the run, not after it, a file that could not be written."""
    for path in paths:
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: no directory {path.parent}")


def _write_outputs(
    args: argparse.Namespace, where: Target, inputs: InferInputs, levels: list[report.LevelResult]
) -> None:
    if args.csv is not None:
        args.csv.write_text(report.to_csv(levels))
    if args.json is not None:
        run = {
            "url": where.address if where.protocol == "grpc" else where.base_url,
            "model": args.model,
            "protocol": where.protocol,
            "rows_per_request": inputs.rows,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.array.shape)} for t in inputs.tensors],
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        }
        args.json.write_text(report.to_json(run, levels))


def _usage(message: str) -> int:
    print(f"ferry: {message}", file=sys.stderr)
    return 2
