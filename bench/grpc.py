"""`make bench-grpc`: Ferry's gRPC endpoint against its own REST JSON, the in-process
onnxruntime ceiling and MLServer's gRPC endpoint, on the benchmark's MLP and CNN.

h2load (Debian's nghttp2-client) drives unary gRPC: one ModelInferRequest with raw
tensors (as tritonclient.grpc sends it), framed once, posted over HTTP/2 by 16 clients;
wrk drives REST as in `make bench`. Each answer is checked once before it is measured,
and after each gRPC run Ferry's /metrics must show no failed request (h2load sees only
HTTP statuses; gRPC errors travel in trailers). The calls h2load cancels when its time is
up (counted 499, client closed) are not errors. Rounds are
interleaved; every figure is the median over rounds and every target a ratio of figures
measured in the same run. Usage: python -m bench.grpc [--rounds 3] [--duration 10]"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import grpc
import numpy as np

from bench import wrk
from bench.ceiling import BATCH_SIZES
from bench.machine import describe
from bench.models import build_cnn, build_mlp
from bench.procs import stop_tree
from bench.run import measure_ceiling
from bench.scenarios import build_scenarios, sample_inputs, verify
from bench.servers import (
    MODELS,
    ORT_THREADS,
    PEER_VENV,
    ROOT,
    SERVERS,
    Layout,
    ferry_command,
    free_ports,
    start,
    wait_ready,
    write_repositories,
)
from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc

CONNECTIONS = 16
RESULTS = ROOT / "bench" / "results"


def say(message: str) -> None:
    print(message, flush=True)


def infer_request(model: str, array: np.ndarray) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="input", datatype="FP32", shape=array.shape)
    message.raw_input_contents.append(array.astype("<f4").tobytes())
    return message


def framed(message: pb.ModelInferRequest) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    body = message.SerializeToString()
    return b"\0" + len(body).to_bytes(4, "big") + body


def check_grpc(address: str, model: str, array: np.ndarray, expected: np.ndarray) -> None:
    """One call through a real gRPC client; raises unless the answer has the reference argmax."""
    with grpc.insecure_channel(address) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(model, array), timeout=30)
    raw = answer.raw_output_contents[0] if answer.raw_output_contents else None
    values = (
        np.frombuffer(raw, dtype="<f4")
        if raw is not None
        else np.asarray(answer.outputs[0].contents.fp32_contents, dtype=np.float32)
    )
    if int(values.argmax()) != int(expected.argmax()):
        raise AssertionError(f"{model} over gRPC: argmax {int(values.argmax())}, expected {int(expected.argmax())}")


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    mean_ms: float
    succeeded: int
    failed: int


def h2load(address: str, body: Path, duration_s: float, warmup_s: float) -> tuple[Load, str]:
    """Unary gRPC load over loopback for ``duration_s`` after ``warmup_s``."""
    if not address.startswith("127.0.0.1:"):
        raise ValueError(f"refusing to load anything but loopback: {address}")
    tool = shutil.which("h2load")
    if tool is None:
        raise RuntimeError("h2load is not installed (make bench-grpc installs Debian's nghttp2-client)")
    command = [
        tool,
        f"--clients={CONNECTIONS}",
        "--threads=2",
        "--max-concurrent-streams=1",
        f"--duration={max(1, round(duration_s))}",
        f"--warm-up-time={max(1, round(warmup_s))}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        f"--data={body}",
        f"http://{address}/inference.GRPCInferenceService/ModelInfer",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + warmup_s + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"h2load exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", done.stdout)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", done.stdout)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", done.stdout)
    if rate is None or counts is None or mean is None:
        raise ValueError(f"cannot read h2load's report:\n{done.stdout}")
    return Load(float(rate.group(1)), _ms(mean.group(1)), int(counts.group(1)), int(counts.group(2))), done.stdout


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"h2load reported a time as {text!r}")
    return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]


def ferry_failures(base_url: str, model: str) -> int:
    """Requests of ``model`` the server has answered with an error so far, from /metrics.
    499s are left out: h2load cancels the calls still in flight when its time is up."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    pattern = re.compile(rf'^ferry_requests_total{{code="(\d+)",model="{model}",[^}}]*}} ([\d.e+]+)$', re.M)
    return sum(int(float(n)) for code, n in pattern.findall(text) if code not in ("200", "499"))


def run_ferry(layout: Layout, bodies: dict[str, Path], args: argparse.Namespace, rows: list[dict[str, object]],
              round_no: int) -> None:  # fmt: skip
    http_port, grpc_port = free_ports(2)
    address = f"127.0.0.1:{grpc_port}"
    command = [*ferry_command([layout.model_repo], http_port), "--grpc-port", str(grpc_port)]
    with (args.out / f"ferry-round{round_no}.log").open("wb") as log:
        proc = start(command, layout.cwd("ferry"), None, log)
        try:
            wait_ready(proc, f"http://127.0.0.1:{http_port}/v2/health/ready", 120)
            scenarios = {s.key: s for s in build_scenarios(layout.model_repo, ORT_THREADS)}
            mlp_json = scenarios["mlp-json"]
            verify(f"http://127.0.0.1:{http_port}", mlp_json)
            script = wrk.write_script(mlp_json, layout.work)
            url = f"http://127.0.0.1:{http_port}{mlp_json.path}"
            wrk.run(url, script, args.warmup)
            result, _ = wrk.run(url, script, args.duration)
            rows.append({"round": round_no, "server": "ferry", "scenario": "mlp-rest-json",
                         "requests_per_s": result.requests_per_s, "mean_ms": None,
                         "errors": result.errors})  # fmt: skip
            say(f"  Ferry REST JSON mlp: {result.requests_per_s:,.0f} req/s, {result.errors} errors")
            for model in MODELS:
                expected = scenarios["mlp-json" if model == "mlp" else "cnn-json"].expected
                check_grpc(address, model, sample_inputs()[model], expected)
                base_url = f"http://127.0.0.1:{http_port}"
                before = ferry_failures(base_url, model)
                load, _ = h2load(address, bodies[model], args.duration, args.warmup)
                errors = load.failed + ferry_failures(base_url, model) - before
                rows.append({"round": round_no, "server": "ferry", "scenario": f"{model}-grpc",
                             "requests_per_s": load.requests_per_s, "mean_ms": load.mean_ms,
                             "errors": errors})  # fmt: skip
                say(f"  Ferry gRPC {model}: {load.requests_per_s:,.0f} req/s, mean {load.mean_ms:.2f} ms, "
                    f"{errors} errors")  # fmt: skip
        finally:
            stop_tree(proc)


def run_mlserver(layout: Layout, bodies: dict[str, Path], args: argparse.Namespace, rows: list[dict[str, object]],
                 round_no: int) -> None:  # fmt: skip
    spec = next(s for s in SERVERS if s.key == "mlserver")
    ports = free_ports(2)
    address = f"127.0.0.1:{ports[1]}"
    with (args.out / f"mlserver-round{round_no}.log").open("wb") as log:
        proc = start(spec.command(layout, ports), layout.cwd("mlserver"), spec.environment(layout, ports), log)
        try:
            wait_ready(proc, f"http://127.0.0.1:{ports[0]}/v2/health/ready", 180)
            scenarios = {s.key: s for s in build_scenarios(layout.model_repo, ORT_THREADS)}
            check_grpc(address, "mlp", sample_inputs()["mlp"], scenarios["mlp-json"].expected)
            load, _ = h2load(address, bodies["mlp"], args.duration, args.warmup)
            rows.append({"round": round_no, "server": "mlserver", "scenario": "mlp-grpc",
                         "requests_per_s": load.requests_per_s, "mean_ms": load.mean_ms,
                         "errors": load.failed})  # fmt: skip
            say(f"  MLServer gRPC mlp: {load.requests_per_s:,.0f} req/s, mean {load.mean_ms:.2f} ms")
        finally:
            stop_tree(proc)


def run_noop(layout: Layout, bodies: dict[str, Path], args: argparse.Namespace, rows: list[dict[str, object]],
             round_no: int) -> None:  # fmt: skip
    """The no-op grpc.aio servicer (bench/grpc_noop.py): the ceiling of grpcio's server."""
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "bench.grpc_noop", str(port)]
    with (args.out / f"noop-round{round_no}.log").open("wb") as log:
        proc = start(command, ROOT, None, log)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with grpc.insecure_channel(address) as channel:
                        pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            load, _ = h2load(address, bodies["mlp"], args.duration, args.warmup)
            rows.append({"round": round_no, "server": "grpc.aio no-op", "scenario": "mlp-grpc",
                         "requests_per_s": load.requests_per_s, "mean_ms": load.mean_ms,
                         "errors": load.failed})  # fmt: skip
            say(f"  grpc.aio no-op servicer: {load.requests_per_s:,.0f} req/s, mean {load.mean_ms:.2f} ms")
        finally:
            stop_tree(proc)


def figure(rows: list[dict[str, object]], server: str, scenario: str) -> float | None:
    values = [float(r["requests_per_s"]) for r in rows if r["server"] == server and r["scenario"] == scenario]  # type: ignore[arg-type]
    return median(values) if values else None


def report(rows: list[dict[str, object]], ceilings: dict[str, list[float]], args: argparse.Namespace) -> str:
    rest = figure(rows, "ferry", "mlp-rest-json")
    mlp, cnn = figure(rows, "ferry", "mlp-grpc"), figure(rows, "ferry", "cnn-grpc")
    peer = figure(rows, "mlserver", "mlp-grpc")
    cnn_ceiling = median(ceilings["cnn"]) if ceilings["cnn"] else None
    noop = figure(rows, "grpc.aio no-op", "mlp-grpc")
    errors = sum(int(r["errors"]) for r in rows if r["server"] == "ferry")  # type: ignore[call-overload]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "n/a"

    def verdict(a: float | None, b: float | None, at_least: float) -> str:
        return "n/a" if not a or not b else "PASS" if a / b >= at_least else "FAIL"

    lines = [
        "# gRPC benchmark",
        "",
        f"Generated by `make bench-grpc` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{args.rounds} interleaved round(s), {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up, "
        f"{CONNECTIONS} connections over loopback (h2load for gRPC, wrk for REST), medians over rounds.",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        f"| MLP, one row: Ferry gRPC req/s >= Ferry REST JSON req/s | {mlp or 0:,.0f} vs {rest or 0:,.0f} "
        f"({ratio(mlp, rest)}) | {verdict(mlp, rest, 1.0)} |",
        f"| CNN 3x64x64 over gRPC >= 85% of the in-process onnxruntime ceiling | {cnn or 0:,.0f} img/s vs "
        f"{cnn_ceiling or 0:,.0f} ({ratio(cnn, cnn_ceiling)}) | {verdict(cnn, cnn_ceiling, 0.85)} |",
        f"| MLP, one row: Ferry gRPC >= 2x MLServer gRPC | {mlp or 0:,.0f} vs {peer or 0:,.0f} "
        f"({ratio(mlp, peer)}) | {verdict(mlp, peer, 2.0)} |",
        f"| (why the first target is out of reach) a grpc.aio servicer that does nothing vs Ferry REST JSON | "
        f"{noop or 0:,.0f} vs {rest or 0:,.0f} ({ratio(noop, rest)}); Ferry gRPC is at {ratio(mlp, noop)} of the no-op "
        f"| info |",
        f"| Ferry: zero errors (h2load failures + failures in Ferry's statistics) | "
        f"{errors} | {'PASS' if errors == 0 else 'FAIL'} |",
        "",
        "| server | scenario | req/s (median) | mean ms | rounds |",
        "|---|---|---:|---:|---:|",
    ]
    for server, scenario in sorted({(str(r["server"]), str(r["scenario"])) for r in rows}):
        picked = [r for r in rows if r["server"] == server and r["scenario"] == scenario]
        means = [float(r["mean_ms"]) for r in picked if r["mean_ms"] is not None]  # type: ignore[arg-type]
        mean = f"{median(means):.2f}" if means else "—"
        lines.append(f"| {server} | {scenario} | {figure(rows, server, scenario):,.0f} | {mean} | {len(picked)} |")
    for model, values in ceilings.items():
        if values:
            lines.append(f"| onnxruntime in-process ceiling | {model} (best of batch {BATCH_SIZES}) | "
                         f"{median(values):,.0f} rows/s | | {len(values)} |")  # fmt: skip
    machine = describe(PEER_VENV / "bin" / "python") if (PEER_VENV / "bin" / "python").exists() else {}
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--ceiling-seconds", type=float, default=1.0)
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer (no bench/.venv)")
    parser.add_argument("--out", type=Path, default=RESULTS / "grpc")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    layout = Layout(args.out / "work")
    layout.work.mkdir(parents=True, exist_ok=True)
    write_repositories(layout, {"mlp": build_mlp, "cnn": build_cnn})
    bodies = {}
    for model, sample in sample_inputs().items():
        np.save(layout.work / f"{model}-sample.npy", sample)
        bodies[model] = layout.work / f"{model}.grpc"
        bodies[model].write_bytes(framed(infer_request(model, sample)))
    rows: list[dict[str, object]] = []
    ceilings: dict[str, list[float]] = {"cnn": []}
    for round_no in range(1, args.rounds + 1):
        say(f"Round {round_no}/{args.rounds}")
        ceilings["cnn"].append(max(measure_ceiling(layout, "cnn", args.ceiling_seconds).values()))
        say(f"  ceiling cnn: {ceilings['cnn'][-1]:,.0f} rows/s")
        run_ferry(layout, bodies, args, rows, round_no)
        run_noop(layout, bodies, args, rows, round_no)
        if not args.no_mlserver:
            run_mlserver(layout, bodies, args, rows, round_no)
    text = report(rows, ceilings, args)
    (args.out / "RESULTS.md").write_text(text)
    (args.out / "runs.json").write_text(json.dumps({"rows": rows, "ceilings": ceilings}, indent=1))
    say("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
