"""Turn the raw measurements into tables, targets with PASS/FAIL, and bench/RESULTS.md.

Every figure is the median over rounds; errors are summed over rounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

SCENARIO_TITLES = {
    "mlp-json": "MLP, one row per request, V2 JSON",
    "cnn-json": "CNN, one 3x64x64 image per request, V2 JSON",
    "cnn-binary": "CNN, one 3x64x64 image per request, V2 binary tensor extension",
}


@dataclass
class Record:
    """Everything one `make bench` measured, as plain data (it is also written as JSON)."""

    labels: dict[str, str]
    servers: list[str]
    scenarios: dict[str, list[str]]  # server -> the scenarios it is measured on
    runs: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    ceiling: list[dict[str, Any]] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    verified: dict[str, float] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    rounds: int


def summarise(record: Record, server: str, scenario: str) -> Summary | None:
    runs = [r for r in record.runs if r["server"] == server and r["scenario"] == scenario]
    if not runs:
        return None
    return Summary(
        requests_per_s=median(r["requests_per_s"] for r in runs),
        p50_ms=median(r["p50_ms"] for r in runs),
        p99_ms=median(r["p99_ms"] for r in runs),
        errors=sum(r["non_2xx"] + r["socket_errors"] for r in runs),
        rounds=len(runs),
    )


def ceiling(record: Record, model: str) -> tuple[float, int] | None:
    """Median over rounds of the best rows/s, and the batch size that was best most often."""
    best = [max(c["rates"].items(), key=lambda kv: kv[1]) for c in record.ceiling if c["model"] == model]
    if not best:
        return None
    sizes = [int(size) for size, _ in best]
    return median(rate for _, rate in best), max(set(sizes), key=sizes.count)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def _scenario_table(record: Record, scenario: str) -> list[str]:
    size = record.settings.get("body_bytes", {}).get(scenario)
    lines = [
        f"### {SCENARIO_TITLES[scenario]}" + (f" ({size / 1024:,.1f} KiB request body)" if size else ""),
        "",
        "| server | req/s | p50 ms | p99 ms | errors | Ferry req/s vs this | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ferry = summarise(record, "ferry", scenario)
    for server in record.servers:
        label = record.labels[server]
        if scenario not in record.scenarios[server]:
            lines.append(f"| {label} | skipped: no binary tensor extension | | | | | |")
            continue
        s = summarise(record, server, scenario)
        if s is None:
            lines.append(f"| {label} | not measured (see failures) | | | | | |")
            continue
        versus = "—" if server == "ferry" else _ratio(ferry.requests_per_s if ferry else None, s.requests_per_s)
        numbers = f"{s.requests_per_s:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.errors}"
        lines.append(f"| {label} | {numbers} | {versus} | {s.rounds} |")
    top = ceiling(record, "cnn") if scenario.startswith("cnn") else None
    if top is not None:
        rate, size = top
        versus = f"Ferry at {ferry.requests_per_s / rate:.0%} of it" if ferry else "n/a"
        lines.append(f"| onnxruntime in-process ceiling (batch {size}) | {rate:,.0f} rows/s | | | | {versus} | |")
    return [*lines, ""]


def _target(name: str, measured: str, passed: bool | str | None) -> str:
    """passed: True/False for PASS/FAIL, None when it could not be measured, or a word."""
    verdict = passed if isinstance(passed, str) else "NOT MEASURED" if passed is None else "PASS" if passed else "FAIL"
    return f"| {name} | {measured} | {verdict} |"


def _targets(record: Record) -> list[str]:
    get = summarise
    ferry_mlp, ferry_cnn, ferry_bin = (get(record, "ferry", s) for s in ("mlp-json", "cnn-json", "cnn-binary"))
    rows = ["| target | measured | result |", "|---|---|---|"]

    fastapi = get(record, "fastapi", "mlp-json")
    if ferry_mlp and fastapi:
        x = ferry_mlp.requests_per_s / fastapi.requests_per_s
        rows.append(_target("MLP JSON: Ferry req/s >= 3x FastAPI+ORT", f"{x:.2f}x", x >= 3))
        rows.append(_target(
            "MLP JSON: Ferry p99 <= FastAPI+ORT p99",
            f"{ferry_mlp.p99_ms:.2f} ms vs {fastapi.p99_ms:.2f} ms",
            ferry_mlp.p99_ms <= fastapi.p99_ms,
        ))  # fmt: skip
    else:
        rows.append(_target("MLP JSON: Ferry vs FastAPI+ORT", "not measured", None))
    for peer in ("mlserver", "litserve"):
        other = get(record, peer, "mlp-json")
        label = record.labels[peer]
        if ferry_mlp and other:
            x = ferry_mlp.requests_per_s / other.requests_per_s
            rows.append(_target(f"MLP JSON: Ferry req/s ahead of {label}", f"{x:.2f}x", x > 1))
        else:
            rows.append(_target(f"MLP JSON: Ferry req/s ahead of {label}", "not measured", None))

    top = ceiling(record, "cnn")
    if ferry_bin and top:
        share = ferry_bin.requests_per_s / top[0]
        measured = f"{ferry_bin.requests_per_s:,.0f} img/s = {share:.0%} of {top[0]:,.0f}"
        rows.append(_target("CNN binary: Ferry >= 85% of the in-process ceiling", measured, share >= 0.85))
    else:
        rows.append(_target("CNN binary: Ferry >= 85% of the in-process ceiling", "not measured", None))

    mlserver = get(record, "mlserver", "cnn-json")
    if ferry_cnn and mlserver:
        x = ferry_cnn.requests_per_s / mlserver.requests_per_s
        rows.append(_target("CNN JSON: Ferry req/s >= 1.5x MLServer", f"{x:.2f}x", x >= 1.5))
    else:
        rows.append(_target("CNN JSON: Ferry req/s >= 1.5x MLServer", "not measured", None))

    ferry_errors = sum(r["non_2xx"] + r["socket_errors"] for r in record.runs if r["server"] == "ferry")
    ferry_failed = [f for f in record.failures if f["server"] == "ferry"]
    rows.append(_target(
        "Ferry: zero errors in every run (and every check passed)",
        f"{ferry_errors} errors, {len(ferry_failed)} failed checks",
        ferry_errors == 0 and not ferry_failed and any(r["server"] == "ferry" for r in record.runs),
    ))  # fmt: skip
    peer_errors = sum(r["non_2xx"] + r["socket_errors"] for r in record.runs if r["server"] != "ferry")
    peer_failed = [f for f in record.failures if f["server"] != "ferry"]
    rows.append(_target(
        "Peers: zero errors (else their numbers mean less)",
        f"{peer_errors} errors, {len(peer_failed)} failed checks",
        peer_errors == 0 and not peer_failed,
    ))  # fmt: skip
    memory = {
        record.labels[server]: median(m["rss_loaded_mib"] for m in record.memory if m["server"] == server)
        for server in record.servers
        if any(m["server"] == server for m in record.memory)
    }
    if memory:
        sizes = ", ".join(f"{label} {mib:,.0f}" for label, mib in memory.items())
        rows.append(_target("RSS after load, MiB (whole process tree; see Memory)", sizes, "info"))
    if record.startup_s:
        startup = median(record.startup_s)
        runs = ", ".join(f"{s:.2f}" for s in record.startup_s)
        rows.append(_target("Ferry start-up to ready, one ONNX model, < 1.5 s", f"{startup:.2f} s ({runs})",
                            startup < 1.5))  # fmt: skip
    else:
        rows.append(_target("Ferry start-up to ready, one ONNX model, < 1.5 s", "not measured", None))
    return rows


def _memory(record: Record) -> list[str]:
    rows = [
        "| server | processes | RSS when ready, MiB | RSS after load, MiB | PSS after load, MiB | ready after, s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for server in record.servers:
        entries = [m for m in record.memory if m["server"] == server]
        if not entries:
            rows.append(f"| {record.labels[server]} | not measured | | | | |")
            continue

        def med(key: str, entries: list[dict[str, Any]] = entries) -> float:
            return median(m[key] for m in entries)

        rows.append(
            f"| {record.labels[server]} | {med('processes'):.0f} | {med('rss_ready_mib'):,.0f} | "
            f"{med('rss_loaded_mib'):,.0f} | {med('pss_loaded_mib'):,.0f} | {med('ready_s'):.1f} |"
        )
    return rows


def _ceilings(record: Record) -> list[str]:
    rows = ["| model | best rows/s | at batch size | rows/s at batch 1 |", "|---|---:|---:|---:|"]
    for model in ("mlp", "cnn"):
        top = ceiling(record, model)
        single = [c["rates"]["1"] for c in record.ceiling if c["model"] == model and "1" in c["rates"]]
        if top is not None and single:
            rows.append(f"| {model} | {top[0]:,.0f} | {top[1]} | {median(single):,.0f} |")
    return rows


def render(record: Record) -> str:
    s = record.settings
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{s['command']}` on {record.machine.get('date', '?')}; took {s.get('wall_s', 0) / 60:.1f} min.",
        f"{s['rounds']} interleaved round(s); each figure is the median over rounds, errors are summed. "
        f"wrk: {s['connections']} connections, {s['wrk_threads']} threads, {s['warmup_s']:g} s warm-up then "
        f"{s['duration_s']:g} s measured, over loopback, so wrk shares the machine's cores with the server. "
        f"onnxruntime intra-op threads: {s['ort_threads']}.",
        "",
        "## Targets",
        "",
        *_targets(record),
        "",
        "## Throughput and latency",
        "",
    ]
    if record.verified:
        worst = max(record.verified.values())
        lines += [
            f"Each server's answer was checked once per start, before it was measured: {len(record.verified)} "
            f"server/scenario pairs gave onnxruntime's argmax (largest absolute difference {worst:.1e}).",
            "",
        ]
    for scenario in SCENARIO_TITLES:
        lines += _scenario_table(record, scenario)
    lines += ["## In-process onnxruntime ceiling", "", *_ceilings(record), ""]
    lines += ["## Memory (whole process tree, both models loaded)", "", *_memory(record), ""]
    lines += [
        "RSS sums each process's resident set, so pages shared between a server's processes count "
        "once per process; PSS shares them out.",
        "",
    ]
    if record.failures:
        lines += ["## Failures", ""]
        lines += [
            f"- round {f['round']}, {record.labels[f['server']]}, {f.get('scenario') or 'server'}: {f['error']}"
            for f in record.failures
        ]
        lines.append("")
    lines += ["## Setup", ""]
    lines += [f"- {key}: {value}" for key, value in record.machine.items()]
    lines += [f"- Ferry {key}: `{value}`" for key, value in s["ferry"].items()]
    lines += [f"- {key}: {value}" for key, value in s["peers"].items()]
    lines.append("")
    return "\n".join(lines)
