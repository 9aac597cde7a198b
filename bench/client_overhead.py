"""Is `ferry bench` itself the bottleneck? The same `ferry serve mlp.onnx` (the digits MLP,
one row, V2 JSON: the smallest request, so the client's share is the largest) loaded at
the same concurrency on the same URL by three clients, one after another:

- wrk (C, several threads: the baseline; its Lua script posts the very bytes ferry bench sends);
- `ferry bench URL mlp --protocol rest-json` (the command users run, as a subprocess);
- a plain httpx.AsyncClient loop (HTTP/1.1, a pool sized to the concurrency, the body
  encoded once): the design ferry bench's REST driver was measured against.

Each client gets the same warm-up before its measured run. Reported per concurrency
level: req/s and p50 of each, ferry bench / wrk and httpx / wrk, and each client's own CPU
time per request over the measured window (wrk and httpx from their process times,
ferry bench from its JSON report). Rounds interleave the clients; the figures are medians.

Usage: python -m bench.client_overhead [--concurrency 1,16,64] [--rounds 3] [--duration 5] [--warmup 1]
Writes bench/results/client-overhead.md."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

import numpy as np

from bench import wrk
from bench.models import build_mlp
from bench.overhead import FERRY, ferry
from bench.scenarios import Scenario
from bench.servers import ROOT
from ferry.bench.metadata import fetch
from ferry.bench.options import target
from ferry.bench.report import percentile
from ferry.bench.requests import json_body, random_inputs

CLIENTS = ("wrk", "ferry bench", "httpx")


@dataclass(frozen=True)
class Run:
    round_no: int
    client: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    cpu_us_per_request: float


def say(message: str) -> None:
    print(message, flush=True)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, script: Path, concurrency: int, duration_s: float) -> tuple[wrk.WrkResult, float]:
    """One wrk run; returns its report and the CPU time wrk used."""
    tool = shutil.which("wrk")
    if tool is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    command = [tool, f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
               f"--timeout={wrk.REQUEST_TIMEOUT_S}s", "--latency", "-s", str(script), url]  # fmt: skip
    before = children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    used = children_cpu_s() - before
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return wrk.parse(done.stdout), used


def run_ferry_bench(base_url: str, concurrency: int, args: argparse.Namespace, work: Path) -> Run:
    report = work / "ferry-bench.json"
    command = [FERRY, "bench", base_url, "mlp", "--protocol", "rest-json", "--concurrency", str(concurrency),
               "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s", "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.warmup + args.duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"ferry bench exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    level = json.loads(report.read_text())["levels"][0]
    return Run(0, "ferry bench", concurrency, level["requests_per_s"], level["p50_ms"],
               level["client_cpu_us_per_request"])  # fmt: skip


async def _httpx_level(url: str, body: bytes, headers: dict[str, str], concurrency: int, warmup_s: float,
                       duration_s: float) -> tuple[list[float], float]:  # fmt: skip
    """The httpx design: one AsyncClient, HTTP/1.1, keep-alive pool of ``concurrency``
    connections, the same bytes posted by ``concurrency`` workers. Latencies of the answers
    within the window, and this process's CPU time over it."""
    # httpcore tries `import sniffio` on every request; without sniffio installed (newer anyio
    # no longer pulls it in) each try searches sys.path again. A None entry fails that import
    # at once, so httpx is measured at its best, not with a file-system search per request.
    if importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:
        start = time.perf_counter() + warmup_s
        end = start + duration_s

        async def worker() -> None:
            while True:
                sent = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                answered = time.perf_counter()
                if response.status_code != 200:
                    raise RuntimeError(f"httpx got HTTP {response.status_code}: {response.text[:200]}")
                if answered > end:
                    return
                if answered >= start:
                    latencies.append(answered - sent)

        async def cpu() -> float:
            await asyncio.sleep(warmup_s)
            began = time.process_time()
            await asyncio.sleep(duration_s)
            return time.process_time() - began

        meter = asyncio.create_task(cpu())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, await meter


def run_httpx(url: str, scenario: Scenario, concurrency: int, args: argparse.Namespace) -> Run:
    import uvloop  # as ferry bench runs: the same event loop for both designs

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        latencies, cpu_s = runner.run(
            _httpx_level(url, scenario.body, scenario.headers, concurrency, args.warmup, args.duration)
        )
    p50 = percentile(sorted(latencies), 50) or 0.0
    return Run(0, "httpx", concurrency, len(latencies) / args.duration, p50 * 1000, cpu_s / len(latencies) * 1e6)


def measure(client: str, base_url: str, script: Path, scenario: Scenario, concurrency: int,
            args: argparse.Namespace, work: Path) -> Run:  # fmt: skip
    infer_url = base_url + scenario.path
    if client == "wrk":
        if args.warmup > 0:
            run_wrk(infer_url, script, concurrency, args.warmup)
        result, cpu_s = run_wrk(infer_url, script, concurrency, args.duration)
        if result.errors:
            raise RuntimeError(f"wrk: {result.non_2xx} non-2xx answers, {result.socket_errors} socket errors")
        return Run(0, client, concurrency, result.requests_per_s, result.p50_ms, cpu_s / result.requests * 1e6)
    if client == "ferry bench":
        return run_ferry_bench(base_url, concurrency, args, work)
    return run_httpx(infer_url, scenario, concurrency, args)


def render(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    def med(client: str, concurrency: int, attr: str) -> float:
        return median(getattr(r, attr) for r in runs if r.client == client and r.concurrency == concurrency)

    rows = []
    for c in args.concurrency:
        base = med("wrk", c, "requests_per_s")
        cells = [str(c)]
        for client in CLIENTS:
            rate = med(client, c, "requests_per_s")
            ratio = "" if client == "wrk" else f" (x{rate / base:.2f})"
            cells.append(f"{rate:,.0f}{ratio}")
        cells += [f"{med(client, c, 'p50_ms'):.2f}" for client in CLIENTS]
        cells += [f"{med(client, c, 'cpu_us_per_request'):.0f}" for client in CLIENTS]
        rows.append("| " + " | ".join(cells) + " |")
    ratios = [med("ferry bench", c, "requests_per_s") / med("wrk", c, "requests_per_s") for c in args.concurrency]
    per_level = ", ".join(f"x{r:.2f} at {c}" for r, c in zip(ratios, args.concurrency, strict=True))
    return "\n".join([
        "# Client overhead: ferry bench against wrk (and httpx) on the same server",
        "",
        f"`{command}`: `ferry serve mlp.onnx --no-auth` (digits MLP, one row, V2 JSON), {args.rounds} "
        f"interleaved rounds, {args.warmup:g} s warm-up + {args.duration:g} s measured per client and level, "
        f"{os.cpu_count()} CPUs shared by the server and the client. wrk: min(2, N) threads x N connections. "
        "req/s: medians over rounds (ratio to wrk); CPU: the client's own CPU time per request in the window.",
        "",
        "| concurrency | wrk req/s | ferry bench req/s | httpx req/s | wrk p50 ms | ferry bench p50 ms "
        "| httpx p50 ms | wrk CPU us/req | ferry bench CPU us/req | httpx CPU us/req |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        *rows,
        "",
        f"ferry bench / wrk req/s: {per_level} (median over levels x{median(ratios):.2f}).",
        "",
    ])  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ferry.bench.options import concurrency_levels

    parser = argparse.ArgumentParser(prog="python -m bench.client_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=concurrency_levels, default=[1, 16, 64], help="default 1,16,64")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the .md goes")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        parser.error("--rounds must be 1-20 and --duration 1-120")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m bench.client_overhead", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="ferry-client-overhead-") as tmp:
        work = Path(tmp)
        model = work / "mlp.onnx"
        build_mlp(model)
        with ferry(model, work, "server", ["--no-auth"], "warning") as (_, base_url, _log):
            # The body ferry bench sends, from the server's own metadata, posted by wrk and httpx too.
            specs = fetch(target(base_url, "rest-json"), "mlp", None).inputs
            body = json_body(random_inputs(specs, 1))
            scenario = Scenario("mlp", "MLP, one row, V2 JSON", "mlp", False, body.body, body.headers, "", np.zeros(1))
            script = wrk.write_script(scenario, work)
            runs: list[Run] = []
            for round_no in range(1, args.rounds + 1):
                for concurrency in args.concurrency:
                    for client in CLIENTS:
                        run = measure(client, base_url, script, scenario, concurrency, args, work)
                        run = replace(run, round_no=round_no)
                        runs.append(run)
                        say(f"round {round_no}, concurrency {concurrency}, {client}: {run.requests_per_s:,.0f} req/s, "
                            f"p50 {run.p50_ms:.2f} ms, {run.cpu_us_per_request:.0f} us client CPU/request")  # fmt: skip
    text = render(runs, args, command)
    say("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "client-overhead.md"
    path.write_text(text)
    say(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
