"""The operator files of deploy/ against real processes: promtool checks the alert rules
and the example configuration, and runs the rules' unit tests; then a real Prometheus
(Debian's ``prometheus`` package) scrapes a real ``ferry serve`` under load with a
``read`` key, every query of the Grafana dashboard returns data, and the error-ratio
alert fires for the model that fails and not for the healthy one.

Everything runs on 127.0.0.1 with bounded waits. Without ``prometheus``/``promtool``
the tests are skipped, and fail with CI=true (``make test`` installs the package)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.builders import python_model, scale_onnx
from tests.e2e.server import HOST, Server, ferry_command, free_port, start

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "ferry-alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "ferry-alerts.test.yml"
EXAMPLE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "ferry-dashboard.json"

TIMEOUT = 30
READY_TIMEOUT_S = 30.0  # Prometheus answers /-/ready within a second or two
STOP_TIMEOUT_S = 10.0
LOAD_S = 6.0
LOAD_THREADS = 6
SCRAPED_TIMEOUT_S = 20.0  # until Prometheus has every request the test sent
ALERT_TIMEOUT_S = 30.0
RATE_INTERVAL = "1m"  # for Grafana's $__rate_interval: scrapes are 1 s apart here
HEALTHY, FAILING, IDLE = "scale", "flaky", "idle"
KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")

# Fails (500, ModelFailed) on a negative input: raising RuntimeError is a model bug, not
# a refused input (ValueError would answer 400). Not batchable, so a failing request
# never takes healthy ones down with it.
FLAKY_MODEL = """
import numpy as np

import ferry
from ferry.signature import TensorSpec


class Flaky(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1, 4))]
    outputs = [TensorSpec("y", "FP32", (-1, 4))]
    batchable = False

    def predict(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise RuntimeError("negative input")
        return {"y": x * 2}
"""

# Panels whose query may rightly have no series here: nothing fills a queue.
MAY_BE_EMPTY = {"Refused with 503/s"}


# -- tools ------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of a Prometheus binary; skipped when missing, a failure with CI=true."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (Debian: apt-get install prometheus; `make test` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the Prometheus tests are mandatory)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, check=False
    )


def direct() -> requests.Session:
    """A session that ignores proxies from the environment: everything is on loopback."""
    session = requests.Session()
    session.trust_env = False
    return session


# -- promtool ---------------------------------------------------------------------------


def test_promtool_checks_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result
    assert "SUCCESS: 5 rules found" in result.stdout, result


def test_promtool_unit_tests_of_the_alert_rules() -> None:
    # Synthetic series: each alert fires where it should, only after its `for:`, and
    # FerryNoProductionTraffic also for a model without any ferry_requests_total series.
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result
    assert "SUCCESS" in result.stdout, result


def test_promtool_checks_the_example_config(tmp_path: Path) -> None:
    # promtool wants the credentials file to exist: the one place that changes.
    key_file = tmp_path / "ferry-key"
    key_file.write_text("fy_000000000000_" + "A" * 43 + "\n")
    text = EXAMPLE_CONFIG.read_text()
    assert text.count("/etc/prometheus/ferry-key") >= 1
    (tmp_path / "prometheus.yml").write_text(
        text.replace("credentials_file: /etc/prometheus/ferry-key", f"credentials_file: {key_file}")
    )
    shutil.copy(ALERTS, tmp_path / ALERTS.name)  # rule_files is relative to the config
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result
    assert "SUCCESS: 5 rules found" in result.stdout, result


# -- a real Ferry and Prometheus -------------------------------------------------------


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> int:
        """SIGTERM, and SIGKILL if it does not exit in time; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"prometheus did not exit within {STOP_TIMEOUT_S}s of SIGTERM") from None

    def api(self, path: str, **params: str) -> Any:
        with direct() as session:
            response = session.get(f"{self.url}/api/v1/{path}", params=params, timeout=TIMEOUT)
        assert response.status_code == 200, (path, params, response.text)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found


@dataclass
class Stack:
    ferry: Server
    prometheus: Prometheus
    sent: Counter[tuple[str, str]]  # (model, code) -> requests the test sent
    denied: Counter[str]  # what the key checks refused: missing, rate_limited
    at: float  # when Prometheus had scraped every request sent


def model_repository(root: Path) -> Path:
    scale_onnx(root / HEALTHY / "1" / "model.onnx", 2.0)
    scale_onnx(root / IDLE / "1" / "model.onnx", 3.0)  # a production version nobody asks
    python_model(root / FAILING / "1", FLAKY_MODEL)
    return root


def admin_key(server: Server) -> str:
    """The first admin key, which a server with keys on prints once in its log."""
    found = set(KEY.findall(server.log()))
    assert len(found) == 1, f"expected one admin key in the log\n{server.log()}"
    return found.pop()


def create_key(server: Server, admin: str, *args: str) -> str:
    """``ferry keys --json create ARGS``, as an operator makes the key for Prometheus."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "SSL_CERT_"))}
    environ.update(FERRY_URL=server.url, FERRY_API_KEY=admin)
    done = subprocess.run(
        [*ferry_command(), "keys", "--json", "create", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done
    key: str = json.loads(done.stdout)["key"]
    return key


def rules_for_the_test(directory: Path) -> Path:
    """ferry-alerts.yml with every `for:` at 0s: an alert fires at the first evaluation
    that sees its condition. The expressions (and their windows) are the shipped ones."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    path = directory / ALERTS.name
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def prometheus_config(directory: Path, target: str, key_file: Path, rules: Path) -> Path:
    """The example prometheus.yml, pointed at the test's Ferry, scraping every second."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    [job] = config["scrape_configs"]
    job["authorization"]["credentials_file"] = str(key_file)
    job["static_configs"] = [{"targets": [target]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(config: Path, directory: Path) -> Prometheus:
    port = free_port()
    log_path = directory / "prometheus.log"
    command = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={HOST}:{port}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    prometheus = Prometheus(process, f"http://{HOST}:{port}", log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with direct() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.returncode}\n{prometheus.log()}")
            try:
                if session.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                    return prometheus
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
    prometheus.stop()
    raise AssertionError(f"prometheus was not ready within {READY_TIMEOUT_S}s\n{prometheus.log()}")


def infer_body(values: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, len(values)], "data": values}]}


@dataclass
class Load:
    sent: Counter[tuple[str, str]]  # answered requests by (model, code), as ferry_requests_total counts them
    denied: Counter[str]  # refused by the key checks, by reason, as ferry_auth_denied_requests_total


def generate_load(server: Server, key: str, limited_key: str) -> Load:
    """LOAD_S seconds of concurrent requests: the healthy model answers them all but one
    in ten (400, a wrong shape: the client's error), the flaky one fails every other one
    (500). Meanwhile one thread sends requests without a key (401) and with a key
    limited to 1/m (429), spread over the load so that their counters are rates too."""
    load = Load(Counter(), Counter())
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_S

    def worker(n: int) -> None:
        mine: Counter[tuple[str, str]] = Counter()
        with direct() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            i = 0
            while time.monotonic() < deadline:
                model = HEALTHY if i % 2 == 0 else FAILING
                sign = -1.0 if (i // 2 + n) % 2 else 1.0  # every other flaky request fails
                data = [sign * 1.0, 2.0, 3.0, 4.0]
                body = infer_body(data[:3] if model == HEALTHY and i % 20 == 10 else data)
                answer = session.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=TIMEOUT)
                mine[(model, str(answer.status_code))] += 1
                i += 1
        with lock:
            load.sent.update(mine)

    def refused() -> None:
        mine: Counter[str] = Counter()
        # Refused requests are answered too: ferry_requests_total counts them, version "".
        answered: Counter[tuple[str, str]] = Counter()
        with direct() as session:
            while time.monotonic() < deadline:
                url = f"{server.url}/v2/models/{HEALTHY}/infer"
                answer = session.post(url, json=infer_body([1, 2, 3, 4]), timeout=TIMEOUT)
                assert answer.status_code == 401, answer.text
                mine["missing"] += 1
                answered[(HEALTHY, "401")] += 1
                answer = session.post(
                    url, json=infer_body([1, 2, 3, 4]), headers={"Authorization": f"Bearer {limited_key}"}, timeout=5
                )
                assert answer.status_code in (200, 429), answer.text
                answered[(HEALTHY, str(answer.status_code))] += 1
                if answer.status_code == 429:
                    mine["rate_limited"] += 1
                time.sleep(0.2)
        with lock:
            load.denied.update(mine)
            load.sent.update(answered)

    with ThreadPoolExecutor(LOAD_THREADS + 1) as pool:
        futures = [pool.submit(worker, n) for n in range(LOAD_THREADS)] + [pool.submit(refused)]
        for future in futures:
            future.result()
    return load


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, details: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s\n{details()}")
        time.sleep(0.25)


def scraped(prometheus: Prometheus) -> Load:
    """What Prometheus has of the requests the test sent, in the same form."""
    answered = prometheus.query("sum by (model, code) (ferry_requests_total)")
    denied = prometheus.query("sum by (reason) (ferry_auth_denied_requests_total)")
    return Load(
        Counter({(s["metric"]["model"], s["metric"]["code"]): int(float(s["value"][1])) for s in answered}),
        Counter({s["metric"]["reason"]: int(float(s["value"][1])) for s in denied}),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tool("prometheus")
    root = tmp_path_factory.mktemp("prometheus-e2e")
    with ExitStack() as cleanup:
        ferry = start(
            [model_repository(root / "models")], root / "ferry.log", "--data-dir", str(root / "ferry-data"), auth=True
        )
        cleanup.callback(ferry.terminate)
        admin = admin_key(ferry)
        key_file = root / "ferry-key"
        key_file.write_text(create_key(ferry, admin, "--name", "prometheus", "--scopes", "read") + "\n")
        key_file.chmod(0o600)
        limited = create_key(ferry, admin, "--name", "limited", "--scopes", "infer", "--rate", "1/m")

        config = prometheus_config(root, ferry.address, key_file, rules_for_the_test(root))
        checked = promtool("check", "config", str(config))
        assert checked.returncode == 0, checked
        prometheus = start_prometheus(config, root)
        cleanup.callback(prometheus.stop)

        load = generate_load(ferry, admin, limited)
        # Prometheus holds every request once a scrape after the load is in.
        wait_for(
            "Prometheus scraped every request the test sent",
            lambda: scraped(prometheus) == load,
            SCRAPED_TIMEOUT_S,
            lambda: f"sent {load}\nscraped {scraped(prometheus)}\n{prometheus.log()}",
        )
        yield Stack(ferry, prometheus, load.sent, load.denied, time.time())
        # Both stop cleanly (the ExitStack only kills what is left after a failure).
        assert prometheus.stop() == 0, prometheus.log()
        assert ferry.terminate() == 0, ferry.log()


def values(result: list[dict[str, Any]]) -> dict[tuple[str, ...], float]:
    """A query result as {label values in name order: value}."""
    return {tuple(v for _, v in sorted(s["metric"].items())): float(s["value"][1]) for s in result}


def by_version(result: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """{(model, version): value}; Prometheus leaves out labels with an empty value."""
    return {(s["metric"]["model"], s["metric"].get("version", "")): float(s["value"][1]) for s in result}


def by_model(result: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"]["model"]: float(s["value"][1]) for s in result}


def test_load_had_successes_and_failures(stack: Stack) -> None:
    codes = {(HEALTHY, "200"), (HEALTHY, "400"), (HEALTHY, "401"), (HEALTHY, "429"), (FAILING, "200"), (FAILING, "500")}
    assert set(stack.sent) == codes, stack.sent
    assert stack.sent[(HEALTHY, "200")] >= 50, stack.sent
    assert stack.sent[(FAILING, "500")] >= 25, stack.sent
    # The failing model's error ratio is about one half (every other request fails).
    ratio = stack.sent[(FAILING, "500")] / (stack.sent[(FAILING, "500")] + stack.sent[(FAILING, "200")])
    assert 0.3 < ratio < 0.7, stack.sent


def test_prometheus_scrapes_ferry_with_the_read_key(stack: Stack) -> None:
    assert values(stack.prometheus.query('up{job="ferry"} == 1')), stack.prometheus.log()
    targets = stack.prometheus.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets] == [("ferry", "up", "")]
    # Without the key, /metrics is refused: the key in the credentials file did the work.
    with direct() as session:
        assert session.get(f"{stack.ferry.url}/metrics", timeout=5).status_code == 401


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend((inner["title"], target["expr"]) for target in inner.get("targets", []))
    return found


def substitute(expr: str, model: str = ".*", version: str = ".*") -> str:
    """What Grafana sends for "All" (the variables' allValue), or one model and version."""
    for name, value in (
        ("$__rate_interval", RATE_INTERVAL),
        ("$job", "ferry"),
        ("$model", model),
        ("$version", version),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 40
    empty = []
    for title, expr in queries:
        result = stack.prometheus.query(substitute(expr), at=stack.at)
        finite = [v for v in values(result).values() if math.isfinite(v)]
        if not finite and title not in MAY_BE_EMPTY:
            empty.append((title, expr, result))
    assert not empty, "\n\n".join(f"{title}:\n{expr}\n-> {result}" for title, expr, result in empty)


def panel_query(title: str, n: int = 0) -> str:
    return [expr for t, expr in dashboard_queries() if t == title][n]


def query_panel(stack: Stack, title: str, n: int = 0, **variables: str) -> list[dict[str, Any]]:
    return stack.prometheus.query(substitute(panel_query(title, n), **variables), at=stack.at)


def test_dashboard_traffic_errors_and_latency(stack: Stack) -> None:
    traffic = by_version(query_panel(stack, "Requests/s by model and version"))
    assert traffic[(HEALTHY, "1")] > 0 and traffic[(FAILING, "1")] > 0, traffic
    # Refused by the key checks: no version answered. A few per second only, so on a busy
    # machine (scrapes time out while the load runs) the rate may read 0; the exact
    # counts are checked by the fixture (scraped() == what was sent).
    assert traffic[(HEALTHY, "")] >= 0, traffic
    share = values(query_panel(stack, "Traffic share by version"))
    assert share == {(HEALTHY, "1"): 1, (FAILING, "1"): 1}, share
    codes = {("200",), ("400",), ("401",), ("429",), ("500",)}
    assert values(query_panel(stack, "Requests/s by status code")).keys() == codes

    ratio = by_model(query_panel(stack, "5xx error ratio by model"))
    assert ratio[HEALTHY] == 0, ratio  # no 5xx series: 0, not "no data"
    assert 0.3 < ratio[FAILING] < 0.7, ratio
    assert 0.1 < values(query_panel(stack, "5xx error ratio"))[()] < 0.5
    client_errors = by_model(query_panel(stack, "4xx and 5xx/s by model", 0))
    assert set(client_errors) == {HEALTHY}, client_errors  # 4xx: not in the error ratio
    assert set(by_model(query_panel(stack, "4xx and 5xx/s by model", 1))) == {FAILING}

    for n in range(3):  # p50, p90, p99
        [latency] = values(query_panel(stack, "Request latency p50 / p90 / p99", n)).values()
        assert 0 < latency < 30, latency
    for title in ("Queue time p99 by version", "Compute time p99 by version"):
        served = values(query_panel(stack, title))
        assert 0 < served[(HEALTHY, "1")] < 30, (title, served)


def test_dashboard_saturation_batching_and_readiness(stack: Stack) -> None:
    fill = values(query_panel(stack, "Queue fill ratio"))
    assert set(fill) == {(HEALTHY, "1"), (FAILING, "1"), (IDLE, "1")}, fill
    assert all(0 <= v <= 1 for v in fill.values()), fill
    assert set(values(query_panel(stack, "In-flight requests"))) == set(fill)

    batch = values(query_panel(stack, "Average batch size"))
    assert batch[(HEALTHY, "1")] >= 1, batch
    assert batch[(FAILING, "1")] == 1, batch  # not batchable: one request per call
    assert math.isnan(batch[(IDLE, "1")]), batch  # no calls: 0/0

    assert values(query_panel(stack, "Versions ready")) == {(): 3}
    assert values(query_panel(stack, "Versions not ready")) == {(): 0}
    ready = values(query_panel(stack, "Readiness by version"))
    assert ready == {(HEALTHY, "1"): 1, (FAILING, "1"): 1, (IDLE, "1"): 1}
    production = values(query_panel(stack, "Production versions"))
    assert set(production) == set(ready)

    denials = values(query_panel(stack, "Requests refused by key checks"))
    # Every reason is exported from the start (at 0); the test refused with two of them
    # (their exact counts are checked by the fixture; their rates are a few per second).
    assert {("missing",), ("rate_limited",), ("scope",)} <= set(denials), denials
    assert denials[("scope",)] == 0 and all(rate >= 0 for rate in denials.values()), denials
    [limited] = values(query_panel(stack, "Rate-limited requests by key")).values()
    assert limited >= 0  # the series is there; its count is checked exactly by the fixture


def test_dashboard_variables_filter_by_model_and_version(stack: Stack) -> None:
    models = stack.prometheus.api("label/model/values", **{"match[]": 'ferry_model_ready{job=~"ferry"}'})
    assert sorted(models) == sorted([HEALTHY, FAILING, IDLE])
    versions = stack.prometheus.api("label/version/values", **{"match[]": f'ferry_model_ready{{model=~"{HEALTHY}"}}'})
    assert versions == ["1"]
    for title, expr in dashboard_queries():
        result = stack.prometheus.query(substitute(expr, model=HEALTHY, version="1"), at=stack.at)
        assert {s["metric"]["model"] for s in result if "model" in s["metric"]} <= {HEALTHY}, (title, result)
        assert {s["metric"]["version"] for s in result if "version" in s["metric"]} <= {"1"}, (title, result)
    assert values(query_panel(stack, "Requests/s", model=FAILING))[()] > 0


def firing(alerts: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """The firing alerts of that name, by model."""
    return {a["labels"]["model"]: a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"}


def test_error_ratio_alert_fires_for_the_failing_model_only(stack: Stack) -> None:
    prometheus = stack.prometheus

    def fired() -> bool:
        alerts = prometheus.alerts()
        return FAILING in firing(alerts, "FerryHighErrorRatio") and IDLE in firing(alerts, "FerryNoProductionTraffic")

    wait_for("FerryHighErrorRatio firing", fired, ALERT_TIMEOUT_S, lambda: json.dumps(prometheus.alerts(), indent=1))
    alerts = prometheus.alerts()
    errors = firing(alerts, "FerryHighErrorRatio")
    assert set(errors) == {FAILING}, alerts
    alert = errors[FAILING]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith(f"Ferry model {FAILING}: "), alert
    assert 0.3 < float(alert["value"]) < 0.7, alert
    # The idle model has a production version and no ferry_requests_total series at all;
    # the two models that got requests are not reported.
    assert set(firing(alerts, "FerryNoProductionTraffic")) == {IDLE}, alerts
    # Nothing else is wrong with this server.
    names = {a["labels"]["alertname"] for a in alerts}
    assert not names & {"FerryModelNotReady", "FerryQueueSaturation"}, alerts
    rules = prometheus.api("rules", type="alert")["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} == {
        "FerryHighErrorRatio",
        "FerryLatencyP99OverSLO",
        "FerryQueueSaturation",
        "FerryModelNotReady",
        "FerryNoProductionTraffic",
    }
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
