"""What checking an API key costs per inference request.

The main benchmark (bench/run.py) runs Ferry with --no-auth, because none of the peers it
is compared with checks a key. This script measures what that leaves out: the same
`ferry serve mlp.onnx` (the digits MLP, one row, V2 JSON as in bench/scenarios.py), once
with --no-auth (A) and once with keys on and an infer-scoped key sent as
`Authorization: Bearer <key>` by wrk (B). One server at a time, rounds interleaved
(A, B, A, B, ...). Each run records wrk's req/s and p50/p99, and the server's CPU time per
request (utime+stime over its process tree, from /proc, around the measured wrk run):
on a small machine shared with wrk, that is steadier than req/s.

Usage: python -m bench.auth_overhead [--rounds 3] [--duration 8] [--warmup 2]
Writes bench/results/auth_overhead.md."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

from bench import wrk
from bench.models import build_mlp
from bench.procs import descendants, stop_tree
from bench.scenarios import Scenario, _json_body, sample_inputs, verify
from bench.servers import FERRY_VENV, ORT_THREADS, ROOT, free_ports, start, wait_ready

FERRY = str(FERRY_VENV / "bin" / "ferry")
KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
LABELS = {"A": "A: --no-auth", "B": "B: API key"}


@dataclass(frozen=True)
class Run:
    round_no: int
    server: str  # "A" or "B"
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float


def say(message: str) -> None:
    print(message, flush=True)


def mlp_scenario(model: Path, headers: dict[str, str]) -> Scenario:
    """The main benchmark's mlp-json request, with its reference answer from onnxruntime."""
    import onnxruntime as ort

    digit = sample_inputs()["mlp"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = ORT_THREADS["mlp"]
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    output = session.get_outputs()[0].name
    expected = session.run([output], {"input": digit})[0]
    return Scenario("mlp-json", "MLP, one row, V2 JSON", "mlp", False, _json_body(digit), headers, output, expected)


def cpu_ticks(root: int) -> int:
    """utime + stime, in clock ticks, summed over the live processes under ``root``."""
    total = 0
    for pid in descendants(root):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # fields[0] is stat's field 3 (state)
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total


def post_status(url: str, scenario: Scenario, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url + scenario.path, data=scenario.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def ferry(model: Path, work: Path, name: str, data_dir: Path | None) -> Iterator[tuple[int, str, Path]]:
    """`ferry serve` the model, keys on with ``data_dir``, else --no-auth; yields (pid, URL, log)."""
    port = free_ports(1)[0]
    auth = ["--data-dir", str(data_dir)] if data_dir else ["--no-auth"]
    command = [FERRY, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = start([*command, *auth], work, None, out)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(proc, url + "/v2/health/ready", timeout_s=120)
            yield proc.pid, url, log
        except Exception:
            say(f"  log tail ({name}):\n{log.read_text(errors='replace')[-1500:]}")
            raise
        finally:
            stop_tree(proc)


def make_infer_key(model: Path, work: Path, data_dir: Path) -> str:
    """First start on a fresh data directory: read the admin key it prints, make an infer key."""
    with ferry(model, work, "keys", data_dir) as (_, url, log):
        deadline = time.monotonic() + 30
        while (found := KEY.search(log.read_text(errors="replace"))) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the server printed no admin key")
            time.sleep(0.1)
        env = {**os.environ, "FERRY_URL": url, "FERRY_API_KEY": found.group(0)}
        command = [FERRY, "keys", "--json", "create", "--name", "bench", "--scopes", "infer"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
        key: str = json.loads(done.stdout)["key"]
        return key


def check(url: str, scenario: Scenario, plain: Scenario, keyed: bool) -> None:
    """Raise unless the server answers right; with keys on, also unless no key gets a 401."""
    deadline = time.monotonic() + 15
    while post_status(url, scenario, scenario.headers) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)  # ready, but the keys may still be loading
    verify(url, scenario)
    if keyed and (status := post_status(url, plain, plain.headers)) != 401:
        raise AssertionError(f"without a key the server answered {status}, not 401: is the key checked at all?")


def measure(infer_url: str, pid: int, script: Path, args: argparse.Namespace) -> tuple[wrk.WrkResult, float]:
    """wrk warm-up, then the measured run; returns wrk's numbers and server CPU us/request."""
    wrk.run(infer_url, script, args.warmup)
    before = cpu_ticks(pid)
    result, _ = wrk.run(infer_url, script, args.duration)
    used = cpu_ticks(pid) - before
    if result.errors or not result.requests:
        raise RuntimeError(f"{result.non_2xx} non-2xx answers, {result.socket_errors} socket errors")
    return result, used * TICK_US / result.requests


def render(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    def med(server: str, attr: str) -> float:
        return median(getattr(r, attr) for r in runs if r.server == server)

    rows = [
        f"| {r.round_no} | {LABELS[r.server]} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
        f"| {r.cpu_us_per_request:.0f} |"
        for r in runs
    ]
    rows += [
        f"| median | {LABELS[s]} | {med(s, 'requests_per_s'):,.0f} | {med(s, 'p50_ms'):.2f} | {med(s, 'p99_ms'):.2f} "
        f"| {med(s, 'cpu_us_per_request'):.0f} |"
        for s in ("A", "B")
    ]
    rps = med("B", "requests_per_s") / med("A", "requests_per_s")
    cpu = med("B", "cpu_us_per_request") / med("A", "cpu_us_per_request")
    extra = med("B", "cpu_us_per_request") - med("A", "cpu_us_per_request")
    return "\n".join([
        "# API key check overhead: digits MLP, one row, V2 JSON",
        "",
        f"`{command}`: {args.rounds} interleaved rounds, {args.warmup:g} s warm-up + {args.duration:g} s measured, "
        f"wrk {wrk.THREADS} threads x {wrk.CONNECTIONS} connections, {os.cpu_count()} CPUs. "
        "A: `ferry serve mlp.onnx --no-auth`; B: keys on, an infer-scoped key as `Authorization: Bearer`. "
        "CPU: the server's utime+stime per request.",
        "",
        "| round | server | req/s | p50 ms | p99 ms | CPU us/request |",
        "|---|---|--:|--:|--:|--:|",
        *rows,
        "",
        f"B/A: req/s x{rps:.3f}, CPU us/request x{cpu:.3f} ({extra:+.0f} us per request).",
        "",
    ])  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up before each (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the .md goes")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        parser.error("--rounds must be 1-20 and --duration 1-120")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m bench.auth_overhead", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="ferry-auth-bench-") as tmp:
        work = Path(tmp)
        model = work / "mlp.onnx"
        build_mlp(model)
        plain = mlp_scenario(model, {"Content-Type": "application/json"})
        say("Making an infer key ...")
        key = make_infer_key(model, work, work / "data")
        keyed = replace(plain, key="mlp-json-key", headers={**plain.headers, "Authorization": f"Bearer {key}"})
        scripts = {"A": wrk.write_script(plain, work), "B": wrk.write_script(keyed, work)}
        runs: list[Run] = []
        for round_no in range(1, args.rounds + 1):
            for server, scenario in (("A", plain), ("B", keyed)):
                data_dir = work / "data" if server == "B" else None
                with ferry(model, work, f"round{round_no}-{server}", data_dir) as (pid, url, _):
                    check(url, scenario, plain, keyed=server == "B")
                    result, cpu_us = measure(url + scenario.path, pid, scripts[server], args)
                run = Run(round_no, server, result.requests_per_s, result.p50_ms, result.p99_ms, cpu_us)
                runs.append(run)
                say(
                    f"round {round_no} {LABELS[server]}: {run.requests_per_s:,.0f} req/s, p50 {run.p50_ms:.2f} ms, "
                    f"p99 {run.p99_ms:.2f} ms, {run.cpu_us_per_request:.0f} us CPU/request"
                )
    text = render(runs, args, command)
    say("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auth_overhead.md").write_text(text)
    say(f"Wrote {args.out / 'auth_overhead.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
