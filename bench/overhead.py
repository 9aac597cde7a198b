"""What one server feature costs (or saves) per inference request: API keys, metrics, the
access log, or the response cache.

The main benchmark (bench/run.py) runs Ferry with --no-auth, because none of the peers it
is compared with checks a key, and with Ferry's other defaults (metrics on, no access log).
This script measures what each such feature costs on its own: the same `ferry serve
mlp.onnx` (the digits MLP, one row, V2 JSON as in bench/scenarios.py) with the feature off
(A) and on (B), everything else equal:

- auth: A --no-auth; B keys on, an infer-scoped key sent as `Authorization: Bearer` by wrk;
- metrics: A --no-auth --no-metrics; B --no-auth (metrics on, the default);
- access-log: A --no-auth; B --no-auth --access-log, both at --log-level info (access lines
  are INFO; the other features run at warning, as the main benchmark does);
- cache: A --no-auth; B --no-auth with `cache: {max_bytes: 1048576}` in the model's
  config.yaml. wrk repeats one request, so B answers all but the first from the cache:
  the repeated-input workload, the cache's best case.

One server at a time, rounds interleaved (A, B, A, B, ...), each server's answer verified
before it is measured, and afterwards the feature checked really off in A and on in B
(no key: 401; /metrics: 404 in A, 200 with ferry_requests_total in B; the log: access lines
in B only). Each run records wrk's req/s and p50/p99, and the server's CPU time per
request (utime+stime over its process tree, from /proc, around the measured wrk run): on a
small machine shared with wrk, that is steadier than req/s.

Usage: python -m bench.overhead --feature {auth,metrics,access-log,cache} [--rounds 3] [--duration 8] [--warmup 2]
Writes bench/results/overhead-<feature>.md."""

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


@dataclass(frozen=True)
class Feature:
    title: str
    labels: dict[str, str]  # "A"/"B" -> row label
    flags: dict[str, list[str]]  # "A"/"B" -> extra `ferry serve` flags ("--data-dir" added for keys)
    log_level: str
    described: str  # A and B, for the report
    # "A"/"B" -> the model's config.yaml; given: the model is served from a repository
    # (<work>/<A|B>/mlp/1/model.onnx), as a single file has no config.yaml.
    configs: dict[str, str] | None = None


FEATURES: dict[str, Feature] = {
    "auth": Feature(
        "API key check", {"A": "A: --no-auth", "B": "B: API key"}, {"A": ["--no-auth"], "B": []}, "warning",
        "A: `--no-auth`; B: keys on, an infer-scoped key as `Authorization: Bearer`",
    ),
    "metrics": Feature(
        "Prometheus metrics", {"A": "A: --no-metrics", "B": "B: metrics on"},
        {"A": ["--no-auth", "--no-metrics"], "B": ["--no-auth"]}, "warning",
        "A: `--no-auth --no-metrics`; B: `--no-auth` (metrics on, the default; /metrics scraped after each B run)",
    ),
    "access-log": Feature(
        "Access log", {"A": "A: no access log", "B": "B: --access-log"},
        {"A": ["--no-auth"], "B": ["--no-auth", "--access-log"]}, "info",
        "A: `--no-auth`; B: `--no-auth --access-log` (JSON lines, with the server's output, to a file)",
    ),
    "cache": Feature(
        "Response cache (one repeated request)", {"A": "A: no cache", "B": "B: cache hits"},
        {"A": ["--no-auth"], "B": ["--no-auth"]}, "warning",
        "A: `--no-auth`; B: `--no-auth`, `cache: {max_bytes: 1048576}` in config.yaml (all but the first a hit)",
        {"A": "max_batch_size: 32\n", "B": "max_batch_size: 32\ncache: {max_bytes: 1048576}\n"},
    ),
}  # fmt: skip


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


def status_of(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET, or of a POST when ``data`` is given."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def ferry(model: Path, work: Path, name: str, flags: list[str], log_level: str) -> Iterator[tuple[int, str, Path]]:
    """`ferry serve` the model with ``flags``, its output to ``<name>.log``; yields (pid, URL, log)."""
    port = free_ports(1)[0]
    command = [FERRY, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = start([*command, *flags], work, None, out)
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
    with ferry(model, work, "keys", ["--data-dir", str(data_dir)], "warning") as (_, url, log):
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


def check_before(feature: str, server: str, url: str, scenario: Scenario, plain: Scenario) -> None:
    """Raise unless the server answers right; with keys on, also unless no key gets a 401."""
    deadline = time.monotonic() + 15
    while status_of(url + scenario.path, scenario.body, scenario.headers)[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.1)  # ready, but the keys may still be loading
    verify(url, scenario)
    if (
        feature == "auth"
        and server == "B"
        and (status := status_of(url + plain.path, plain.body, plain.headers)[0]) != 401
    ):
        raise AssertionError(f"without a key the server answered {status}, not 401: is the key checked at all?")


def check_after(feature: str, server: str, url: str, log: Path, requests: int) -> None:
    """Raise unless the feature was really off in A and on in B (metrics: scrape; access log: its lines)."""
    if feature == "metrics":
        status, body = status_of(url + "/metrics")
        if server == "A" and status != 404:
            raise AssertionError(f"--no-metrics, yet GET /metrics answered {status}")
        if server == "B" and (status != 200 or b"ferry_requests_total" not in body):
            raise AssertionError(f"GET /metrics answered {status} without ferry_requests_total: {body[:300]!r}")
    elif feature == "cache":
        status, body = status_of(url + "/v2/models/mlp/stats")
        hits = json.loads(body)["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
        if (server == "A" and hits) or (server == "B" and hits < requests):
            raise AssertionError(f"{server}: {hits} cache hits after {requests} measured requests")
        say(f"  {hits:,} cache hits")
    elif feature == "access-log":
        lines = sum(1 for line in log.read_text(errors="replace").splitlines() if '"ferry.access"' in line
                    and json.loads(line).get("logger") == "ferry.access")  # fmt: skip
        if (server == "A" and lines) or (server == "B" and lines < requests):
            raise AssertionError(f"{server}: {lines} access lines in {log.name} after {requests} measured requests")
        say(f"  {log.name}: {lines:,} access lines")


def measure(infer_url: str, pid: int, script: Path, args: argparse.Namespace) -> tuple[wrk.WrkResult, float]:
    """wrk warm-up, then the measured run; returns wrk's numbers and server CPU us/request."""
    wrk.run(infer_url, script, args.warmup)
    before = cpu_ticks(pid)
    result, _ = wrk.run(infer_url, script, args.duration)
    used = cpu_ticks(pid) - before
    if result.errors or not result.requests:
        raise RuntimeError(f"{result.non_2xx} non-2xx answers, {result.socket_errors} socket errors")
    return result, used * TICK_US / result.requests


def render(feature: Feature, runs: list[Run], args: argparse.Namespace, command: str) -> str:
    def med(server: str, attr: str) -> float:
        return median(getattr(r, attr) for r in runs if r.server == server)

    labels = feature.labels
    rows = [
        f"| {r.round_no} | {labels[r.server]} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
        f"| {r.cpu_us_per_request:.0f} |"
        for r in runs
    ]
    rows += [
        f"| median | {labels[s]} | {med(s, 'requests_per_s'):,.0f} | {med(s, 'p50_ms'):.2f} | {med(s, 'p99_ms'):.2f} "
        f"| {med(s, 'cpu_us_per_request'):.0f} |"
        for s in ("A", "B")
    ]
    ratio = {a: med("B", a) / med("A", a) for a in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us_per_request")}
    extra = med("B", "cpu_us_per_request") - med("A", "cpu_us_per_request")
    return "\n".join([
        f"# {feature.title} overhead: digits MLP, one row, V2 JSON",
        "",
        f"`{command}`: {args.rounds} interleaved rounds, {args.warmup:g} s warm-up + {args.duration:g} s measured, "
        f"wrk {wrk.THREADS} threads x {wrk.CONNECTIONS} connections, {os.cpu_count()} CPUs. "
        f"`ferry serve mlp.onnx --log-level {feature.log_level}`, {feature.described}. "
        "CPU: the server's utime+stime per request.",
        "",
        "| round | server | req/s | p50 ms | p99 ms | CPU us/request |",
        "|---|---|--:|--:|--:|--:|",
        *rows,
        "",
        f"B/A (medians): req/s x{ratio['requests_per_s']:.3f}, p50 x{ratio['p50_ms']:.3f}, "
        f"p99 x{ratio['p99_ms']:.3f}, CPU us/request x{ratio['cpu_us_per_request']:.3f} "
        f"({extra:+.0f} us per request).",
        "",
    ])  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--feature", required=True, choices=sorted(FEATURES), help="what B turns on")
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
    feature = FEATURES[args.feature]
    command = " ".join(["python -m bench.overhead", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix=f"ferry-{args.feature}-bench-") as tmp:
        work = Path(tmp)
        model = work / "mlp.onnx"
        build_mlp(model)
        plain = mlp_scenario(model, {"Content-Type": "application/json"})
        scenarios = {"A": plain, "B": plain}
        flags = {server: list(f) for server, f in feature.flags.items()}
        if args.feature == "auth":
            say("Making an infer key ...")
            key = make_infer_key(model, work, work / "data")
            headers = {**plain.headers, "Authorization": f"Bearer {key}"}
            scenarios["B"] = replace(plain, key="mlp-json-key", headers=headers)
            flags["B"] += ["--data-dir", str(work / "data")]
        served = {"A": model, "B": model}
        if feature.configs is not None:
            for server, config in feature.configs.items():
                folder = work / server / "mlp"
                (folder / "1").mkdir(parents=True)
                (folder / "1" / "model.onnx").write_bytes(model.read_bytes())
                (folder / "config.yaml").write_text(config)
                served[server] = work / server
        scripts = {server: wrk.write_script(s, work) for server, s in scenarios.items()}
        runs: list[Run] = []
        for round_no in range(1, args.rounds + 1):
            for server, scenario in scenarios.items():
                name = f"round{round_no}-{server}"
                with ferry(served[server], work, name, flags[server], feature.log_level) as (pid, url, log):
                    check_before(args.feature, server, url, scenario, plain)
                    result, cpu_us = measure(url + scenario.path, pid, scripts[server], args)
                    check_after(args.feature, server, url, log, result.requests)
                run = Run(round_no, server, result.requests_per_s, result.p50_ms, result.p99_ms, cpu_us)
                runs.append(run)
                say(
                    f"round {round_no} {feature.labels[server]}: {run.requests_per_s:,.0f} req/s, "
                    f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, {run.cpu_us_per_request:.0f} us CPU/request"
                )
    text = render(feature, runs, args, command)
    say("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"overhead-{args.feature}.md"
    path.write_text(text)
    say(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
