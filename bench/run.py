"""`make bench`: Ferry against FastAPI+onnxruntime, MLServer and LitServe on the same models.

One server at a time, rounds interleaved, then a report (bench/RESULTS.md).
Usage: python -m bench.run [--rounds 3] [--duration 10] [--servers ferry,mlserver]"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from statistics import median

import numpy as np

from bench import wrk
from bench.machine import describe
from bench.models import build_cnn, build_mlp
from bench.procs import stop_tree, tree_memory_mib
from bench.report import Record, render
from bench.scenarios import Scenario, build_scenarios, sample_inputs, verify
from bench.servers import (
    FERRY_FLAGS,
    FERRY_MODEL_CONFIG,
    FERRY_VENV,
    MODELS,
    ORT_THREADS,
    PEER_VENV,
    ROOT,
    SERVERS,
    Layout,
    ServerSpec,
    ferry_command,
    free_ports,
    serving,
    start,
    wait_ready,
    write_repositories,
)

RESULTS_MD = ROOT / "bench" / "RESULTS.md"


def say(message: str) -> None:
    print(message, flush=True)


def measure_startup(layout: Layout, runs: int) -> list[float]:
    """Seconds from `ferry serve mlp.onnx` being started to /v2/health/ready answering 200."""
    model = layout.work / "mlp.onnx"
    shutil.copy(layout.model_repo / "mlp" / "1" / "model.onnx", model)
    times = []
    for _ in range(runs):
        port = free_ports(1)[0]
        started = time.monotonic()
        proc = start(ferry_command([model], port), layout.cwd("startup"), None, subprocess.DEVNULL)
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready", timeout_s=60, poll_s=0.01)
            times.append(time.monotonic() - started)
        finally:
            stop_tree(proc)
    return times


def measure_ceiling(layout: Layout, model: str, seconds: float) -> dict[str, float]:
    command = [
        str(FERRY_VENV / "bin" / "python"), "-m", "bench.ceiling",
        "--model", str(layout.model_repo / model / "1" / "model.onnx"),
        "--sample", str(layout.work / f"{model}-sample.npy"),
        "--threads", str(ORT_THREADS[model]),
        "--seconds", str(seconds),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=True)
    rates: dict[str, float] = json.loads(done.stdout)
    return rates


def bench_server(
    spec: ServerSpec,
    round_no: int,
    layout: Layout,
    scenarios: list[Scenario],
    scripts: dict[str, Path],
    args: argparse.Namespace,
    record: Record,
) -> None:
    """Start one server, check and measure each of its scenarios, stop it. Failures are
    recorded, never raised: the other servers still run."""
    log = args.out / "logs" / f"round{round_no}-{spec.key}.log"
    try:
        with serving(spec, layout, log) as server:
            rss_ready, _, _ = tree_memory_mib(server.proc.pid)
            say(f"  {spec.label}: ready after {server.ready_s:.1f} s, {rss_ready:,.0f} MiB RSS")
            for scenario in scenarios:
                if scenario.key not in record.scenarios[spec.key]:
                    continue
                try:
                    diff = verify(server.base_url, scenario)
                except Exception as exc:
                    record.failures.append(
                        {
                            "round": round_no,
                            "server": spec.key,
                            "scenario": scenario.key,
                            "error": f"wrong answer: {exc}",
                        }
                    )
                    say(f"    {scenario.key}: FAILED the correctness check: {exc}")
                    continue
                record.verified[f"{spec.key}/{scenario.key}"] = diff
                url = server.base_url + scenario.path
                wrk.run(url, scripts[scenario.key], args.warmup)
                result, raw = wrk.run(url, scripts[scenario.key], args.duration)
                (args.out / "wrk").mkdir(exist_ok=True)
                (args.out / "wrk" / f"round{round_no}-{spec.key}-{scenario.key}.txt").write_text(raw)
                record.runs.append({"round": round_no, "server": spec.key, "scenario": scenario.key,
                                    **result.as_dict()})  # fmt: skip
                say(
                    f"    {scenario.key}: {result.requests_per_s:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                    f"p99 {result.p99_ms:.2f} ms, {result.errors} errors"
                )
            rss, pss, processes = tree_memory_mib(server.proc.pid)
            record.memory.append({
                "round": round_no, "server": spec.key, "processes": processes, "ready_s": server.ready_s,
                "rss_ready_mib": rss_ready, "rss_loaded_mib": rss, "pss_loaded_mib": pss,
            })  # fmt: skip
    except Exception as exc:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        record.failures.append({"round": round_no, "server": spec.key, "scenario": None, "error": str(exc)})
        say(f"  {spec.label}: FAILED: {exc}\n{traceback.format_exc(limit=3)}  log tail ({log}):\n{tail}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up before each (default 2)")
    parser.add_argument("--servers", default=",".join(s.key for s in SERVERS), help="comma-separated subset")
    parser.add_argument("--ceiling-seconds", type=float, default=1.0, help="time per batch size for the ceiling")
    parser.add_argument("--startup-runs", type=int, default=3, help="`ferry serve` start-ups to time (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="generated files and logs")
    parser.add_argument("--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        parser.error("--rounds must be 1-20 and --duration 1-120")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    chosen = args.servers.split(",")
    specs = [s for s in SERVERS if s.key in chosen]
    if not specs or len(specs) != len(chosen):
        raise SystemExit(f"--servers takes a subset of {', '.join(s.key for s in SERVERS)}")
    layout = Layout(args.out / "work")
    layout.work.mkdir(parents=True, exist_ok=True)
    say("Building the models and the requests ...")
    write_repositories(layout, {"mlp": build_mlp, "cnn": build_cnn})
    for model, sample in sample_inputs().items():
        np.save(layout.work / f"{model}-sample.npy", sample)
    scenarios = build_scenarios(layout.model_repo, ORT_THREADS)
    (layout.work / "lua").mkdir(exist_ok=True)
    scripts = {s.key: wrk.write_script(s, layout.work / "lua") for s in scenarios}

    record = Record(
        labels={s.key: s.label for s in SERVERS},
        servers=[s.key for s in specs],
        scenarios={s.key: [sc.key for sc in scenarios if s.binary or not sc.binary] for s in specs},
        machine=describe(PEER_VENV / "bin" / "python"),
    )
    if "ferry" in chosen and args.startup_runs > 0:
        say(f"Timing Ferry's start-up ({args.startup_runs} runs) ...")
        try:
            record.startup_s = measure_startup(layout, args.startup_runs)
            say(f"  median {median(record.startup_s):.2f} s")
        except Exception as exc:
            record.failures.append({"round": 0, "server": "ferry", "scenario": "start-up", "error": str(exc)})
            say(f"  FAILED: {exc}")

    for round_no in range(1, args.rounds + 1):
        say(f"Round {round_no}/{args.rounds}")
        for model in MODELS:
            rates = measure_ceiling(layout, model, args.ceiling_seconds)
            record.ceiling.append({"round": round_no, "model": model, "rates": rates})
            size, rate = max(rates.items(), key=lambda kv: kv[1])
            say(f"  ceiling {model}: {rate:,.0f} rows/s at batch {size}")
        for spec in specs:
            bench_server(spec, round_no, layout, scenarios, scripts, args, record)

    record.machine["load average at end"] = Path("/proc/loadavg").read_text().split(" ")[0]
    record.settings = {
        "command": "make bench" + (f' BENCH_ARGS="{" ".join(argv or sys.argv[1:])}"' if (argv or sys.argv[1:]) else ""),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": wrk.CONNECTIONS,
        "wrk_threads": wrk.THREADS,
        "body_bytes": {sc.key: len(sc.body) for sc in scenarios},
        "ort_threads": ", ".join(f"{k} {v}" for k, v in ORT_THREADS.items()),
        "ferry": {"flags": " ".join(FERRY_FLAGS) or "(none)", **{f"{k}/config.yaml": v
                                                                 for k, v in FERRY_MODEL_CONFIG.items()}},
        "peers": {
            "FastAPI+ORT": "bench/peers/fastapi_app.py: pydantic body, one session.run per request, 1 uvicorn process",
            "MLServer": "bench/peers/mlserver_runtime.py, bench/peers/mlserver/*.json (adaptive batching)",
            "LitServe": "bench/peers/litserve_app.py (batching on, 1 API server, 1 worker)",
        },
        "wall_s": time.monotonic() - began,
    }  # fmt: skip
    text = render(record)
    say("\n" + text)
    (args.out / "raw.json").write_text(json.dumps(record.__dict__, indent=1, default=str))
    if not args.no_results_md:
        RESULTS_MD.write_text(text)
        say(f"Wrote {RESULTS_MD.relative_to(ROOT)} and {(args.out / 'raw.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
