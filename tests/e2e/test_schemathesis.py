"""Schemathesis against a real ``ferry server`` with keys on: every operation of the
server's own /openapi.json, called with the admin key, must never answer 5xx and never
answer outside its documentation (status code, content type, body schema).

How it runs: one server over a fresh data directory holding model ``scale`` (a small
ONNX model): version 1 on stage production, version 2 its shadow, both uploaded through
the API, so the model routes have something real. For each operation:

* the coverage phase: schemathesis's deterministic boundary, wrong-type and
  wrong-method cases (``schema.iter_coverage_cases``);
* the fuzzing phase, positive then negative: Hypothesis draws cases from
  ``operation.as_strategy()`` (derandomized, the same cases every run), mixed with cases
  whose path names the real model, version, stage or key, and with valid bodies for it
  (tensors for inference, weights for traffic, versions for stages).

Every case is sent with the admin key and checked; a failed check is recorded rather than
raised, so one finding never hides the next and every operation gets its full budget of
calls. Run with ``-s`` for the summary: operations, calls, statuses and findings.

Any finding fails the test. (Its first run found 28, from six causes: version numbers
past int64 and dates at the calendar's edge reaching the database as 500s, empty 200s
documented as JSON, validation errors documented as 422, an undocumented 404, and a
':' in a V1 model name falling through to a 405; all fixed.)
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup

from tests.builders import scale_onnx
from tests.e2e.server import Server, start_command

KEY = re.compile(r"fy_(?P<id>[0-9a-f]{12})_[A-Za-z0-9_-]{43}")
MODEL = "scale"
WIDTH = 4  # scale_onnx: y = x * factor, FP32 [-1, WIDTH]
# Fuzzed cases per operation and generation mode (fewer where fewer distinct ones exist).
# With the coverage cases, about 5,000 calls: under a minute on 2 cores.
MAX_EXAMPLES = 100
REQUEST_TIMEOUT_S = 10.0
SETUP_TIMEOUT_S = 60.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    unsupported_method,  # coverage cases with a method the path does not have: 405 and Allow
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Operations that change what the others see run last, in this order: the model is
# unloaded just before it is loaded again.
ORDER_LAST = [
    "PUT /api/v1/models/{name}/stages/{stage}",
    "PUT /api/v1/models/{name}/traffic",
    "POST /api/v1/models/{name}/rollback",
    "POST /api/v1/models/{name}/versions/{number}/archive",
    "DELETE /api/v1/models/{name}/versions/{number}",
    "DELETE /api/v1/keys/{key_id}",
    "POST /v2/repository/models/{name}/unload",
    "POST /v2/repository/models/{name}/load",
]

# -- the server under test -------------------------------------------------------------


@dataclass
class Target:
    server: Server
    key: str
    key_id: str
    spare_key_id: str  # made for DELETE /api/v1/keys/{key_id} to revoke
    setup: list[tuple[str, requests.Response]] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def redact(self, text: str) -> str:
        return text.replace(self.key, "$FERRY_KEY")


def _admin_key(server: Server) -> re.Match[str]:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = KEY.search(server.log())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no admin key in the log\n{server.log()}")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("schemathesis")
    server = start_command(["server", "--data-dir", str(root / "data")], root / "server.log", auth=True)
    try:
        found = _admin_key(server)
        auth = {"Authorization": f"Bearer {found.group(0)}"}
        setup: list[tuple[str, requests.Response]] = []

        def call(label: str, path: str, status: int, **kwargs: Any) -> requests.Response:
            method = label.split(" ", 1)[0]
            response = requests.request(method, server.url + path, headers=auth, timeout=SETUP_TIMEOUT_S, **kwargs)
            assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
            setup.append((label, response))
            return response

        for number, stage in ((1, {"stage": "production"}), (2, {})):
            model = scale_onnx(root / f"v{number}.onnx", float(number + 1), WIDTH)
            with model.open("rb") as f:
                upload = call(
                    "POST /api/v1/models/{name}/versions",
                    f"/api/v1/models/{MODEL}/versions",
                    201,
                    files={"file": (model.name, f)},
                    data=stage,
                )
            assert upload.json()["state"] == "ready", upload.text
        traffic = {"weights": {"1": 100}, "shadow": {"version": 2, "percent": 50}}
        call("PUT /api/v1/models/{name}/traffic", f"/api/v1/models/{MODEL}/traffic", 200, json=traffic)
        spare = call("POST /api/v1/keys", "/api/v1/keys", 201, json={"name": "spare", "scopes": ["read"]})
        yield Target(server, found.group(0), found["id"], spare.json()["id"], setup)
    finally:
        server.terminate()


# -- what is sent ----------------------------------------------------------------------


def _real_path_parameters(target: Target) -> dict[str, Any]:
    """Path parameter values that name something that exists."""
    return {"name": MODEL, "version": "1", "number": 1, "stage": "production", "key_id": target.spare_key_id}


# A body, its media type, and the binary extension's Inference-Header-Content-Length.
Body = tuple[Any, str, int | None]
_VALUES = st.floats(-1e6, 1e6, width=32) | st.integers(-1000, 1000)


@st.composite
def _v2_json(draw: st.DrawFn) -> Body:
    rows = draw(st.integers(1, 3))
    data = draw(st.lists(_VALUES, min_size=rows * WIDTH, max_size=rows * WIDTH))
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, WIDTH], "data": data}]}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        body["outputs"] = [{"name": "y", "parameters": {"binary_data": draw(st.booleans())}}]
    return body, "application/json", None


@st.composite
def _v2_binary(draw: st.DrawFn) -> Body:
    """The binary tensor extension: a JSON header, then the raw little-endian FP32s."""
    rows = draw(st.integers(1, 3))
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=rows * WIDTH, max_size=rows * WIDTH))
    raw = struct.pack(f"<{len(values)}f", *values)
    tensor = {"name": "x", "datatype": "FP32", "shape": [rows, WIDTH], "parameters": {"binary_data_size": len(raw)}}
    header: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()
    return head + raw, "application/octet-stream", len(head)


def _json(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Body]:
    return strategy.map(lambda body: (body, "application/json", None))


_VERSION = st.sampled_from([1, 2])
_V1_PREDICT = _json(
    st.fixed_dictionaries(
        {"instances": st.lists(st.lists(_VALUES, min_size=WIDTH, max_size=WIDTH), min_size=1, max_size=3)}
    )
)
_TRAFFIC = _json(
    st.fixed_dictionaries(
        {"weights": st.sampled_from([{"1": 100}, {"2": 100}, {"1": 90, "2": 10}, {"1": 50, "2": 50}])},
        optional={"shadow": st.none() | st.fixed_dictionaries({"version": _VERSION, "percent": st.integers(0, 100)})},
    )
)
# Valid bodies for the real model, by operation.
REAL_BODIES: dict[str, st.SearchStrategy[Body]] = {
    "POST /v2/models/{name}/infer": _v2_json() | _v2_binary(),
    "POST /v2/models/{name}/versions/{version}/infer": _v2_json() | _v2_binary(),
    "POST /v1/models/{name}:predict": _V1_PREDICT,
    "PUT /api/v1/models/{name}/traffic": _TRAFFIC,
    "PUT /api/v1/models/{name}/stages/{stage}": _json(st.fixed_dictionaries({"version": _VERSION})),
}


# Hand-written cases for inputs the generators reach only by luck (integers past int64,
# dates at the edge of the calendar, a ':' in a model name): each is sent once per run.
# (operation, path parameters, query, JSON body)
Probe = tuple[str, dict[str, Any], dict[str, Any] | None, Any]
BIG = 2**64
PROBES: list[Probe] = [
    ("PUT /api/v1/models/{name}/stages/{stage}", {"name": MODEL, "stage": "production"}, None, {"version": BIG}),
    ("POST /api/v1/models/{name}/versions/{number}/archive", {"name": MODEL, "number": BIG}, None, None),
    ("DELETE /api/v1/models/{name}/versions/{number}", {"name": MODEL, "number": BIG}, None, None),
    ("PUT /api/v1/models/{name}/traffic", {"name": MODEL}, None, {"weights": {str(BIG): 100}}),
    (
        "PUT /api/v1/models/{name}/traffic",
        {"name": MODEL},
        None,
        {"weights": {"1": 100}, "shadow": {"version": BIG, "percent": 10}},
    ),
    ("POST /api/v1/keys", {}, None, {"name": "probe", "scopes": ["read"], "expires": "99999999d"}),
    ("POST /api/v1/keys", {}, None, {"name": "probe", "scopes": ["read"], "expires": "9999-12-31T23:59:59-23:00"}),
    ("GET /api/v1/audit", {}, {"since": "9999-12-31T23:59:59-14:00"}, None),
    ("GET /api/v1/audit", {}, {"since": "0001-01-01T00:00:00+14:00"}, None),
    ("POST /v1/models/{name}:predict", {"name": "a:b"}, None, {"instances": [[1.0] * WIDTH]}),
]


def _with_body(case: schemathesis.Case, body: Body) -> schemathesis.Case:
    case.body, case.media_type, header_length = body
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "inference-header-content-length"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    case.headers = headers
    return case


def _strategy(
    operation: schemathesis.APIOperation, mode: GenerationMode, target: Target
) -> st.SearchStrategy[schemathesis.Case]:
    """Schemathesis's own cases, mixed with cases on the real model (and valid bodies)."""
    real = _real_path_parameters(target)
    fixed = {name: real[name] for name in re.findall(r"{(\w+)}", operation.path) if name in real}
    choices = [operation.as_strategy(mode)]
    if fixed:
        choices.append(operation.as_strategy(mode, path_parameters=fixed))
    bodies = REAL_BODIES.get(operation.label)
    if bodies is not None and mode is GenerationMode.POSITIVE:
        on_model = operation.as_strategy(mode, path_parameters=fixed, media_type="application/json")
        choices.append(st.tuples(on_model, bodies).map(lambda pair: _with_body(*pair)))
    return st.one_of(choices)


# -- what is seen ----------------------------------------------------------------------


@dataclass
class Finding:
    operation: str
    code: str
    status: int
    title: str
    message: str
    curl: str
    count: int = 1

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.operation, self.code, self.status)

    def describe(self) -> str:
        message = self.message.strip().replace("\n", "\n      ")
        return (
            f"- {self.operation} -> {self.status}: {self.code} {self.title} (x{self.count})\n"
            f"      {message}\n      {self.curl}"
        )


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    findings: dict[tuple[str, str, int], Finding] = field(default_factory=dict)

    def status(self, operation: str, status: int) -> None:
        self.calls[operation] += 1
        self.statuses.setdefault(operation, Counter())[status] += 1

    def failure(self, finding: Finding) -> None:
        seen = self.findings.get(finding.key)
        if seen is None:
            self.findings[finding.key] = finding
            return
        seen.count += 1
        if len(finding.curl) < len(seen.curl):  # keep the shortest reproduction
            seen.curl, seen.message = finding.curl, finding.message

    def summary(self, elapsed_s: float) -> str:
        total = sum(self.calls.values())
        lines = [f"schemathesis: {len(self.calls)} operations, {total} calls in {elapsed_s:.1f}s"]
        for operation in sorted(self.calls, key=lambda label: label.split(" ", 1)[::-1]):
            statuses = ", ".join(f"{s}x{n}" for s, n in sorted(self.statuses[operation].items()))
            failed = sum(f.count for f in self.findings.values() if f.operation == operation)
            note = f"  FAILED {failed}" if failed else ""
            lines.append(f"  {operation:<55} {self.calls[operation]:>4} calls  [{statuses}]{note}")
        lines.append(f"findings: {len(self.findings)}")
        lines += [f.describe() for f in self.findings.values()]
        return "\n".join(lines)


def _failures(exc: BaseException) -> list[Failure]:
    if isinstance(exc, FailureGroup):
        return [f for inner in exc.exceptions for f in _failures(inner)]
    return [exc] if isinstance(exc, Failure) else []


class Runner:
    def __init__(self, schema: Any, target: Target, session: requests.Session) -> None:
        self.schema = schema
        self.target = target
        self.session = session
        self.tally = Tally()

    def check(self, case: schemathesis.Case) -> None:
        """Send one case with the admin key and record its status and failed checks."""
        target = self.target
        label = case.operation.label
        if case.path_parameters and str(case.path_parameters.get("key_id")) == target.key_id:
            return  # never revoke the key this test runs with
        curl = target.redact(case.as_curl_command(headers=target.auth))
        try:
            response = case.call(session=self.session, headers=target.auth, timeout=REQUEST_TIMEOUT_S)
        except requests.Timeout:
            self.session.cookies.clear()
            self.tally.status(label, 0)
            self.tally.failure(Finding(label, "timeout", 0, f"no answer in {REQUEST_TIMEOUT_S}s", "", curl))
            return
        # Every call authenticates with the key alone, never a session cookie an earlier one set.
        self.session.cookies.clear()
        self.tally.status(label, response.status_code)
        try:
            case.validate_response(response, checks=CHECKS, headers=target.auth)
        except (Failure, FailureGroup) as exc:
            body = target.redact(response.text[:300])
            for failure in _failures(exc):
                message = f"{target.redact(failure.message)}\nbody: {body}"
                self.tally.failure(Finding(label, failure.code, response.status_code, failure.title, message, curl))

    def coverage(self, operation: schemathesis.APIOperation) -> None:
        config = self.schema.config.generation_for(operation=operation)
        for case in self.schema.iter_coverage_cases(operation, generation_modes=list(MODES), generation_config=config):
            self.check(case)

    def fuzz(self, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(case=_strategy(operation, mode, self.target))
        def run(case: schemathesis.Case) -> None:
            self.check(case)

        # Negative mode: nothing of some operations can be made invalid (a free-form string path).
        with contextlib.suppress(Unsatisfiable):
            run()

    def probe(self, probe: Probe) -> None:
        label, path_parameters, query, body = probe
        method, path = label.split(" ", 1)
        operation = self.schema[path][method]
        extra = {} if body is None else {"body": body, "media_type": "application/json"}
        case = operation.Case(path_parameters=path_parameters, query=query, **extra)
        self.check(case)

    def setup(self) -> None:
        """The fixture's own answers (real uploads, traffic, a key) are held to the schema too."""
        for label, response in self.target.setup:
            method, path = label.split(" ", 1)
            self.tally.status(label, response.status_code)
            try:
                self.schema[path][method].validate_response(response)
            except FailureGroup as exc:
                for failure in _failures(exc):
                    message = self.target.redact(failure.message)
                    finding = Finding(label, failure.code, response.status_code, failure.title, message, "(setup)")
                    self.tally.failure(finding)


# -- the test --------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_every_operation_keeps_to_its_schema(target: Target) -> None:
    started = time.monotonic()
    config = SchemathesisConfig.from_dict(
        {
            # Schemathesis sends the admin key itself, never a made-up one in its place.
            "auth": {"openapi": {"bearer": {"bearer": target.key}}},
            "generation": {"with-security-parameters": False},
            "headers": target.auth,
            "request-timeout": REQUEST_TIMEOUT_S,
        }
    )
    schema = schemathesis.openapi.from_url(
        f"{target.server.url}/openapi.json", config=config, headers=target.auth, timeout=REQUEST_TIMEOUT_S
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: ORDER_LAST.index(op.label) if op.label in ORDER_LAST else -1)
    assert len(operations) >= 30, [op.label for op in operations]

    with requests.Session() as session:
        session.trust_env = False  # no proxy between the test and a loopback server
        runner = Runner(schema, target, session)
        runner.setup()
        for probe in PROBES:  # first, on the state the fixture made
            runner.probe(probe)
        for operation in operations:
            runner.coverage(operation)
            for mode in MODES:
                runner.fuzz(operation, mode)
    tally = runner.tally
    print("\n" + tally.summary(time.monotonic() - started))
    unhandled = [line for line in target.server.log().splitlines() if "unhandled error" in line]
    print(f"server log: {len(unhandled)} unhandled errors" + "".join(f"\n  {line}" for line in unhandled[:20]))

    # The run left the server up and the admin key working.
    assert target.server.alive(), target.server.log()
    assert requests.get(f"{target.server.url}/api/v1/keys", headers=target.auth, timeout=10).status_code == 200

    findings = list(tally.findings.values())
    assert not findings, "schemathesis found:\n" + "\n".join(f.describe() for f in findings)
