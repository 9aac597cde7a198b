"""Readable output of the client commands (``ferry models``, ``versions``, ...): aligned
tables and one-line summaries of the management API's JSON documents. Pure functions
of the decoded JSON, with nothing heavy imported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

NONE = "-"
MAIN_STAGES = ("production", "staging")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, no trailing spaces."""
    cells = [[_cell(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(headers))]
    lines = []
    for row in cells:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        lines.append(line.rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    return " ".join(str(value).split())  # one line per row, whatever the text holds


def size(n: object) -> str:
    """Bytes in binary units: ``812 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if not isinstance(n, int | float) or isinstance(n, bool):
        return NONE
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def milliseconds(ms: object) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return NONE
    return f"{ms:.1f}"


def timestamp(value: object) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS``, in local time when it has a zone."""
    if not isinstance(value, str) or not value:
        return NONE
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def traffic(document: Mapping[str, Any] | None) -> str:
    """``4=90% 5=10%``, ``(production)`` when no split is set, and the shadow if any."""
    document = document or {}
    weights = document.get("weights") or {}
    parts = [f"{v}={w}%" for v, w in sorted(weights.items(), key=lambda kv: _number(kv[0]))]
    text = " ".join(parts) if parts else "(production)"
    shadow = document.get("shadow_version")
    if shadow is not None:
        text += f", shadow {shadow}={document.get('shadow_percent', 0)}%"
    return text


def _number(value: object) -> tuple[int, str]:
    text = str(value)
    return (int(text), text) if text.isdigit() else (1 << 62, text)


def models_table(models: Sequence[Mapping[str, Any]]) -> str:
    if not models:
        return "no models yet (upload one with: ferry push FILE --name NAME)"
    count = _version_count_key(models)
    aliases = any(set(m.get("stages") or {}) - set(MAIN_STAGES) for m in models)
    headers = ["NAME", "PRODUCTION", "STAGING", "TRAFFIC"]
    headers += ["OTHER STAGES"] if aliases else []
    headers += ["VERSIONS"] if count else []
    headers += ["DESCRIPTION"]
    rows = []
    for model in models:
        stages = model.get("stages") or {}
        row: list[object] = [model.get("name"), stages.get("production"), stages.get("staging")]
        row.append(traffic(model.get("traffic")))
        if aliases:
            row.append(", ".join(f"{s}={v}" for s, v in sorted(stages.items()) if s not in MAIN_STAGES))
        if count:
            value = model.get(count)
            row.append(len(value) if isinstance(value, list) else value)
        row.append(model.get("description"))
        rows.append(row)
    return table(headers, rows)


def _version_count_key(models: Sequence[Mapping[str, Any]]) -> str | None:
    """The field that counts a model's versions, if this server sends one."""
    for key in ("version_count", "versions_count", "versions"):
        if any(key in m for m in models):
            return key
    return None


def versions_table(versions: Sequence[Mapping[str, Any]], model: Mapping[str, Any] | None = None) -> str:
    """One row per version; STAGES and TRAFFIC come from the model document."""
    if not versions:
        return "no versions"
    model = model or {}
    stages: dict[str, list[str]] = {}
    for stage, number in sorted((model.get("stages") or {}).items()):
        stages.setdefault(str(number), []).append(stage)
    shares = _traffic_per_version(model.get("traffic") or {})
    headers = ["VERSION", "STATE", "RUNTIME", "SIZE", "WARM-UP MS", "UPLOADED", "STAGES", "TRAFFIC", "FAILURE"]
    rows = []
    for v in sorted(versions, key=lambda v: _number(v.get("number"))):
        number = str(v.get("number"))
        rows.append(
            [
                number,
                v.get("state"),
                v.get("runtime"),
                size(v.get("artifact_size")),
                milliseconds(v.get("warmup_ms")),
                timestamp(v.get("created_at")),
                ", ".join(stages.get(number, [])),
                shares.get(number),
                v.get("failure_reason"),
            ]
        )
    return table(headers, rows)


def _traffic_per_version(document: Mapping[str, Any]) -> dict[str, str]:
    shares = {str(v): f"{w}%" for v, w in (document.get("weights") or {}).items()}
    shadow = document.get("shadow_version")
    if shadow is not None:
        shares[str(shadow)] = f"shadow {document.get('shadow_percent', 0)}%"
    return shares


def version_summary(version: Mapping[str, Any], stage: str | None = None) -> str:
    """What ``ferry push`` says: the number and state, and why it failed."""
    name, number, state = version.get("model"), version.get("number"), version.get("state")
    line = f"{name} version {number}: {state}"
    if state == "ready":
        details = [f"runtime {version.get('runtime')}", size(version.get("artifact_size"))]
        if version.get("warmup_ms") is not None:
            details.append(f"warm-up {milliseconds(version.get('warmup_ms'))} ms")
        line += f" ({', '.join(details)})"
        if stage:
            line += f"\n{name}: {stage} -> version {number}"
    elif state == "failed":
        line += f"\nreason: {version.get('failure_reason') or 'not given'}"
    return line


def model_summary(model: Mapping[str, Any]) -> str:
    """A model's stages and traffic, after a promotion, a traffic change or a rollback."""
    name = model.get("name")
    stages = model.get("stages") or {}
    production = stages.get("production")
    lines = [f"{name}: production -> {'version ' + str(production) if production is not None else 'none'}"]
    others = [f"{s} -> version {v}" for s, v in sorted(stages.items()) if s != "production"]
    lines += [f"{name}: {line}" for line in others]
    lines.append(f"{name}: traffic {traffic(model.get('traffic'))}")
    return "\n".join(lines)


def _rate(per_s: object) -> str:
    if not isinstance(per_s, int | float) or isinstance(per_s, bool):
        return NONE
    return f"{per_s:g}/s" if per_s >= 1 else f"{per_s * 60:g}/m"


def keys_table(keys: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            key.get("id"),
            key.get("name"),
            ",".join(key.get("scopes") or []),
            ",".join(key["models"]) if key.get("models") is not None else "(all)",
            _rate(key.get("rate_per_s")),
            timestamp(key.get("expires_at")),
            key.get("state"),
            timestamp(key.get("created_at")),
        ]
        for key in keys
    ]
    return table(["ID", "NAME", "SCOPES", "MODELS", "RATE", "EXPIRES", "STATE", "CREATED"], rows)


def created_key(key: Mapping[str, Any]) -> str:
    return (
        f"created key {key.get('id')} ({key.get('name')}; scopes {','.join(key.get('scopes') or [])}).\n"
        "It is shown this once; keep it somewhere safe:\n\n"
        f"    {key.get('key')}\n"
    )


def audit_table(events: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            timestamp(event.get("at")),
            f"{event.get('key_name')} ({event.get('key_id')})" if event.get("key_id") else NONE,
            event.get("action"),
            event.get("target"),
            event.get("result"),
            event.get("status"),
            event.get("count", 1),
            event.get("client"),
        ]
        for event in events
    ]
    return table(["WHEN", "KEY", "ACTION", "TARGET", "RESULT", "STATUS", "COUNT", "CLIENT"], rows)
