"""ferry.registry on real databases: every test runs on SQLite (a temp file) and on
PostgreSQL (a schema of its own, dropped afterwards). With CI=true an unreachable
PostgreSQL fails the run; elsewhere those tests are skipped with the reason."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from ferry.artifacts import TEMP_PREFIX, Artifact, LocalArtifactStore
from ferry.errors import Conflict, InvalidInput, NotFound
from ferry.registry import Registry, VersionState, cleanup, connect, default_url, delete_version, migrate
from ferry.registry.db import current_revision, head_revision
from ferry.registry.schema import Base
from tests.postgres import postgres_schema

TABLES = {"models", "versions", "stages", "stage_history", "traffic", "api_keys", "audit_events", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield default_url(tmp_path / "data")
    else:
        yield from postgres_schema()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = connect(database_url)
    yield engine
    engine.dispose()  # before the schema is dropped


@pytest.fixture
def registry(engine: Engine) -> Registry:
    migrate(engine)
    return Registry.from_engine(engine)


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _artifact(content: bytes = b"weights") -> Artifact:
    return Artifact("sha256:" + hashlib.sha256(content).hexdigest(), len(content))


def _ready(registry: Registry, model: str, content: bytes = b"weights", filename: str = "model.onnx") -> int:
    number = registry.add_version(model, "onnx", _artifact(content), filename, "alice").number
    registry.set_version_state(model, number, VersionState.VALIDATING)
    registry.set_version_state(model, number, VersionState.READY, signature={"inputs": []}, warmup_ms=1.5)
    return number


# -- migrations ------------------------------------------------------------------------


def test_migrate_twice_is_a_noop(engine: Engine) -> None:
    migrate(engine)
    migrate(engine)
    assert current_revision(engine) == head_revision() == "0004"
    assert set(inspect(engine).get_table_names()) == TABLES
    # The migration creates exactly the schema the code declares.
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def _migrate_when_told(url: str, go: threading.Event) -> None:
    go.wait(30)
    engine = connect(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def test_two_processes_migrate_at_once(database_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    processes = [spawn.Process(target=_migrate_when_told, args=(database_url, go)) for _ in range(2)]
    for process in processes:
        process.start()
    go.set()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0]
    engine = connect(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


# -- models ----------------------------------------------------------------------------


def test_models(registry: Registry) -> None:
    created = registry.create_model("digits", "handwritten digits", "image-classification", {"team": "vision"})
    registry.create_model("iris")
    assert created.name == "digits" and created.labels == {"team": "vision"}
    assert created.created_at.tzinfo is not None
    assert registry.get_model("digits") == created
    assert [model.name for model in registry.list_models()] == ["digits", "iris"]
    with pytest.raises(Conflict, match="already exists"):
        registry.create_model("digits")
    with pytest.raises(NotFound):
        registry.get_model("nope")
    for bad in ["", "../etc", "a b", "-x", "x" * 129]:
        with pytest.raises(InvalidInput):
            registry.create_model(bad)
    with pytest.raises(InvalidInput):
        registry.create_model("labels", labels={"n": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("name", ["simple\n", "simple\r\n", "\nsimple"])
def test_a_model_name_with_a_newline_is_no_lookalike(registry: Registry, name: str) -> None:
    registry.create_model("simple")
    with pytest.raises(InvalidInput, match="invalid model name"):
        registry.create_model(name)
    assert [model.name for model in registry.list_models()] == ["simple"]


def test_concurrent_create_of_one_name(registry: Registry) -> None:
    barrier, outcomes = threading.Barrier(8), []

    def create() -> None:
        barrier.wait()
        try:
            registry.create_model("race")
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]


# -- versions --------------------------------------------------------------------------


def test_concurrent_uploads_get_distinct_consecutive_numbers(registry: Registry) -> None:
    registry.create_model("digits")
    barrier, numbers, errors = threading.Barrier(8), [], []

    def upload(i: int) -> None:
        barrier.wait()
        try:
            numbers.append(registry.add_version("digits", "onnx", _artifact(bytes([i])), "model.onnx").number)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 9))
    assert [version.number for version in registry.list_versions("digits")] == list(range(1, 9))


def test_version_lifecycle(registry: Registry) -> None:
    registry.create_model("digits")
    version = registry.add_version("digits", "onnx", _artifact(), "model.onnx", "alice")
    assert (version.number, version.state, version.uploaded_by) == (1, VersionState.UPLOADED, "alice")
    assert (version.artifact_digest, version.artifact_size) == (_artifact().digest, len(b"weights"))

    with pytest.raises(Conflict, match="cannot become ready"):
        registry.set_version_state("digits", 1, VersionState.READY)  # skipped validation
    registry.set_version_state("digits", 1, "validating")
    ready = registry.set_version_state(
        "digits", 1, VersionState.READY, signature={"inputs": [1]}, config={"max_batch_size": 8}, warmup_ms=2.5
    )
    assert (ready.state, ready.signature, ready.config, ready.warmup_ms) == (
        VersionState.READY,
        {"inputs": [1]},
        {"max_batch_size": 8},
        2.5,
    )
    assert registry.get_version("digits", 1) == ready

    number = registry.add_version("digits", "sklearn", _artifact(b"2"), "model.skops").number
    failed = registry.set_version_state("digits", number, VersionState.FAILED, reason="warm-up raised ValueError")
    assert (failed.state, failed.failure_reason) == (VersionState.FAILED, "warm-up raised ValueError")
    assert (failed.runtime, failed.filename) == ("sklearn", "model.skops")

    with pytest.raises(InvalidInput):
        registry.set_version_state("digits", 1, "bogus")
    with pytest.raises(NotFound):
        registry.set_version_state("digits", 99, VersionState.FAILED)
    with pytest.raises(NotFound):
        registry.add_version("nope", "onnx", _artifact(), "model.onnx")
    for digest in ["sha256:xyz", "sha256:../../x"]:
        with pytest.raises(InvalidInput):
            registry.add_version("digits", "onnx", Artifact(digest, 1), "model.onnx")
    for filename in ["", "../model.onnx", "a/b.onnx", ".."]:
        with pytest.raises(InvalidInput):
            registry.add_version("digits", "onnx", _artifact(), filename)


# -- stages and traffic ------------------------------------------------------------------


def test_stages(registry: Registry) -> None:
    registry.create_model("digits")
    one, two = _ready(registry, "digits", b"1"), _ready(registry, "digits", b"2")
    uploaded = registry.add_version("digits", "onnx", _artifact(b"3"), "model.onnx").number

    registry.set_stage("digits", "production", one)
    registry.set_stage("digits", "staging", two)
    registry.set_stage("digits", "canary-eu_1", two)
    registry.set_stage("digits", "production", two)  # promote: moves the alias
    assert registry.get_stages("digits") == {"canary-eu_1": two, "production": two, "staging": two}

    with pytest.raises(InvalidInput, match="only ready versions"):
        registry.set_stage("digits", "staging", uploaded)
    with pytest.raises(NotFound):
        registry.set_stage("digits", "staging", 42)
    for bad in ["Production", "1st", "", "a b", "x" * 65]:
        with pytest.raises(InvalidInput, match="invalid stage name"):
            registry.set_stage("digits", bad, one)
    registry.delete_stage("digits", "canary-eu_1")
    with pytest.raises(NotFound):
        registry.delete_stage("digits", "canary-eu_1")
    assert registry.get_stages("digits") == {"production": two, "staging": two}


def test_stage_and_runtime_names_with_a_newline_are_refused(registry: Registry) -> None:
    registry.create_model("digits")
    one = _ready(registry, "digits")
    with pytest.raises(InvalidInput, match="invalid stage name"):
        registry.set_stage("digits", "production\n", one)
    assert registry.get_stages("digits") == {}
    with pytest.raises(InvalidInput, match="invalid runtime name"):
        registry.add_version("digits", "onnx\n", _artifact(b"2"), "model.onnx")
    digest = _artifact(b"3").digest
    with pytest.raises(InvalidInput, match="not an artifact digest"):
        registry.add_version("digits", "onnx", Artifact(digest + "\n", 1), "model.onnx")


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("model\t.onnx", "U+0009"),
        ("\u202exnno.onnx", "U+202E (right-to-left override)"),
        ("mo\u200bdel.onnx", "U+200B (zero width space)"),
        ("model.onnx\u2028", "U+2028 (line separator)"),
        ("model\n.onnx", "U+000A"),
    ],
)
def test_file_names_with_hidden_characters_are_refused(registry: Registry, filename: str, shown: str) -> None:
    registry.create_model("digits")
    with pytest.raises(InvalidInput, match=re.escape(shown)):
        registry.add_version("digits", "onnx", _artifact(), filename)
    assert registry.list_versions("digits") == []


def test_traffic(registry: Registry) -> None:
    registry.create_model("digits")
    one, two, three = (_ready(registry, "digits", bytes([i])) for i in range(3))
    assert registry.get_traffic("digits").weights == {}  # no split yet: the production stage decides

    traffic = registry.set_traffic("digits", {one: 90, two: 10}, shadow=three, shadow_percent=20)
    assert (traffic.weights, traffic.shadow_version, traffic.shadow_percent) == ({one: 90, two: 10}, three, 20)
    assert registry.get_traffic("digits") == traffic
    assert registry.set_traffic("digits", {one: 100, two: 0}).weights == {one: 100}


@pytest.mark.parametrize(
    ("weights", "shadow", "percent", "message"),
    [
        ({1: 50, 2: 40}, None, 0, "add up to 100"),
        ({1: 110, 2: -10}, None, 0, "whole numbers >= 0"),
        ({1: 50.0, 2: 50}, None, 0, "whole numbers"),
        ({1: True, 2: 99}, None, 0, "whole numbers"),
        ({}, None, 0, "at least one version"),
        ({1: 100}, None, 10, "needs a shadow version"),
        ({1: 100}, 2, 101, "0 to 100"),
        ({1: 50, 2: 50}, 2, 10, "both the shadow"),
        ({1: 50, 3: 50}, None, 0, "only ready versions"),
        ({1: 100}, 3, 10, "only ready versions"),
    ],
)
def test_traffic_validation(
    registry: Registry, weights: dict[int, int], shadow: int | None, percent: int, message: str
) -> None:
    registry.create_model("digits")
    _ready(registry, "digits", b"1")
    _ready(registry, "digits", b"2")
    registry.add_version("digits", "onnx", _artifact(b"3"), "model.onnx")  # version 3, not ready
    with pytest.raises(InvalidInput, match=message):
        registry.set_traffic("digits", weights, shadow=shadow, shadow_percent=percent)
    with pytest.raises(NotFound):
        registry.set_traffic("digits", {1: 50, 9: 50})
    with pytest.raises(NotFound):
        registry.set_traffic("nope", {1: 100})


def test_versions_in_use_cannot_be_archived_or_deleted(registry: Registry) -> None:
    registry.create_model("digits")
    one, two, three, four = (_ready(registry, "digits", bytes([i])) for i in range(4))
    registry.set_stage("digits", "production", one)
    registry.set_traffic("digits", {one: 0, two: 100}, shadow=three, shadow_percent=5)

    for number, why in [(one, "stage production"), (two, "takes traffic"), (three, "takes traffic")]:
        with pytest.raises(Conflict, match=why):
            registry.archive_version("digits", number)
        with pytest.raises(Conflict, match=why):
            registry.delete_version("digits", number)
        with pytest.raises(Conflict, match=why):
            registry.set_version_state("digits", number, VersionState.FAILED, reason="broken")

    assert registry.archive_version("digits", four).state == VersionState.ARCHIVED
    with pytest.raises(InvalidInput, match="only ready versions"):
        registry.set_stage("digits", "staging", four)
    assert registry.set_version_state("digits", four, VersionState.READY).state == VersionState.READY

    registry.set_traffic("digits", {four: 100})  # frees two and three
    registry.set_stage("digits", "production", four)  # frees one
    for number in (one, two, three):
        assert registry.delete_version("digits", number).number == number
    assert [version.number for version in registry.list_versions("digits")] == [four]
    with pytest.raises(NotFound):
        registry.delete_version("digits", one)


def test_revision_grows_on_every_stage_and_traffic_change(registry: Registry) -> None:
    assert registry.revision() == 0
    registry.create_model("a")
    registry.create_model("b")
    seen = [registry.revision()]
    a1, b1 = _ready(registry, "a"), _ready(registry, "b")
    assert registry.revision() == seen[-1]  # uploads and validation do not count

    for change in [
        lambda: registry.set_stage("b", "production", b1),
        lambda: registry.set_stage("a", "production", a1),  # a's own revision was lower
        lambda: registry.set_traffic("a", {a1: 100}),
        lambda: registry.set_traffic("b", {b1: 100}),
        lambda: registry.set_stage("a", "staging", a1),
        lambda: registry.delete_stage("a", "staging"),
    ]:
        change()
        assert registry.revision() > seen[-1]
        seen.append(registry.revision())
    assert registry.get_traffic("b").revision == seen[-3]


# -- start-up cleanup --------------------------------------------------------------------


def test_cleanup_after_a_crash(registry: Registry, store: LocalArtifactStore) -> None:
    registry.create_model("digits")
    kept = store.put(io.BytesIO(b"ready version"))
    number = registry.add_version("digits", "onnx", kept, "model.onnx").number
    registry.set_version_state("digits", number, VersionState.VALIDATING)
    registry.set_version_state("digits", number, VersionState.READY)
    # A process killed mid-upload: one version recorded but never validated, one stuck
    # validating, one blob stored but never recorded, one partial temp file.
    stuck = store.put(io.BytesIO(b"never validated"))
    uploaded = registry.add_version("digits", "onnx", stuck, "model.onnx").number
    validating = registry.add_version("digits", "onnx", stuck, "model.onnx").number
    registry.set_version_state("digits", validating, VersionState.VALIDATING)
    orphan = store.put(io.BytesIO(b"never recorded"))
    (store.root / "sha256" / f"{TEMP_PREFIX}partial").write_bytes(b"half an upl")

    report = cleanup(registry, store)

    assert sorted(version.number for version in report.interrupted) == [uploaded, validating]
    for n in (uploaded, validating):
        version = registry.get_version("digits", n)
        assert (version.state, version.failure_reason) == (VersionState.FAILED, "interrupted")
    assert registry.get_version("digits", number).state == VersionState.READY
    assert report.orphans_deleted == [orphan.digest]
    assert report.temp_files_deleted == 1
    assert sorted(store.digests()) == sorted([kept.digest, stuck.digest])
    assert registry.referenced_digests() == set(store.digests())

    again = cleanup(registry, store)  # a second start finds nothing to do
    assert (again.interrupted, again.orphans_deleted, again.temp_files_deleted) == ([], [], 0)


def test_cleanup_grace_period_spares_uploads_in_progress(registry: Registry, store: LocalArtifactStore) -> None:
    registry.create_model("digits")
    in_progress = store.put(io.BytesIO(b"being validated elsewhere"))
    registry.add_version("digits", "onnx", in_progress, "model.onnx")
    just_stored = store.put(io.BytesIO(b"about to be recorded"))
    report = cleanup(registry, store, older_than_s=3600)
    assert (report.interrupted, report.orphans_deleted) == ([], [])
    assert set(store.digests()) == {in_progress.digest, just_stored.digest}


def test_delete_version_removes_an_unshared_artifact(registry: Registry, store: LocalArtifactStore) -> None:
    registry.create_model("digits")
    shared = store.put(io.BytesIO(b"same bytes"))
    one = registry.add_version("digits", "onnx", shared, "model.onnx").number
    two = registry.add_version("digits", "onnx", shared, "model.onnx").number
    delete_version(registry, store, "digits", one)
    assert store.exists(shared.digest)  # version two still needs it
    delete_version(registry, store, "digits", two)
    assert not store.exists(shared.digest)


def test_version_numbers_are_never_reused(registry: Registry) -> None:
    registry.create_model("numbered")
    first = registry.add_version("numbered", "onnx", _artifact(b"one"), "model.onnx")
    second = registry.add_version("numbered", "onnx", _artifact(b"two"), "model.onnx")
    registry.delete_version("numbered", second.number)
    third = registry.add_version("numbered", "onnx", _artifact(b"three"), "model.onnx")
    assert (first.number, second.number, third.number) == (1, 2, 3)


# -- stage history and rollback ----------------------------------------------------------


def test_rollback_pops_production_history_like_an_undo_stack(registry: Registry) -> None:
    registry.create_model("digits")
    one, two, three = (_ready(registry, "digits", bytes([n])) for n in (1, 2, 3))
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("digits")  # never promoted

    registry.set_stage("digits", "production", one)
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("digits")  # nothing before the first promotion
    registry.set_stage("digits", "production", two)
    registry.set_stage("digits", "production", two)  # no change: not a history entry
    registry.set_stage("digits", "production", three)
    registry.set_stage("digits", "staging", three)  # other stages have histories of their own
    assert registry.stage_history("digits") == [one, two, three]
    registry.set_traffic("digits", {three: 90, two: 10}, shadow=one, shadow_percent=20)

    before = registry.revision()
    assert registry.rollback("digits") == two
    assert registry.revision() > before
    assert registry.get_stages("digits") == {"production": two, "staging": three}
    traffic = registry.get_traffic("digits")
    assert (traffic.weights, traffic.shadow_version, traffic.shadow_percent) == ({}, None, 0)
    assert registry.stage_history("digits") == [one, two]

    assert registry.rollback("digits") == one  # again: further back
    assert registry.get_stages("digits")["production"] == one
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("digits")
    assert registry.stage_history("digits") == [one]
    assert registry.stage_history("digits", "staging") == [three]
    with pytest.raises(NotFound):
        registry.rollback("nope")


def test_rollback_refuses_a_version_no_longer_ready_or_deleted(registry: Registry) -> None:
    registry.create_model("digits")
    one, two, three = (_ready(registry, "digits", bytes([n])) for n in (1, 2, 3))
    registry.set_stage("digits", "production", one)
    registry.set_stage("digits", "production", two)
    registry.archive_version("digits", one)
    with pytest.raises(Conflict, match="version 1: it is archived"):
        registry.rollback("digits")
    assert registry.get_stages("digits") == {"production": two}  # refused: nothing changed
    assert registry.stage_history("digits") == [one, two]

    registry.delete_version("digits", one)  # the history keeps the entry, without a version
    assert registry.stage_history("digits") == [None, two]
    with pytest.raises(Conflict, match="no production version before"):
        registry.rollback("digits")

    # A removed stage is an entry too: rolling back undoes the removal.
    registry.set_stage("digits", "production", three)
    registry.delete_stage("digits", "production")
    assert registry.stage_history("digits") == [None, two, three, None]
    assert registry.rollback("digits") == three
    assert registry.get_stages("digits") == {"production": three}


def test_concurrent_rollbacks_each_pop_one_entry(registry: Registry) -> None:
    registry.create_model("digits")
    numbers = [_ready(registry, "digits", bytes([n])) for n in range(1, 5)]
    for number in numbers:
        registry.set_stage("digits", "production", number)
    results: list[int | str] = []

    def roll() -> None:
        try:
            results.append(registry.rollback("digits"))
        except Conflict as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=roll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=str) == [1, 2, 3]
    assert registry.stage_history("digits") == [1]


def test_migration_0002_starts_history_at_the_current_stages(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    from ferry.registry.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    registry = Registry.from_engine(engine)
    registry.create_model("digits")
    one = _ready(registry, "digits")
    with engine.begin() as connection:  # a stage set by a 0001-era server
        connection.execute(
            text("INSERT INTO stages (model_id, name, version_id) SELECT model_id, 'production', id FROM versions")
        )
    migrate(engine)
    assert registry.stage_history("digits") == [one]
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("digits")


def test_a_node_that_may_not_migrate_waits_for_the_schema(engine: Engine) -> None:
    from ferry.registry.db import SchemaNotReady, wait_for_schema

    said: list[str] = []
    with pytest.raises(SchemaNotReady, match=r"an empty database\), this release needs .* run `ferry migrate`"):
        wait_for_schema(engine, timeout_s=0.3, interval_s=0.1, log=said.append)
    assert len(said) == 1 and said[0].startswith("waiting for `ferry migrate`")  # said once, not each look
    # `ferry migrate` runs elsewhere (a Helm hook Job) while the node waits.
    migrating = threading.Timer(0.3, migrate, (engine,))
    migrating.start()
    wait_for_schema(engine, timeout_s=60, interval_s=0.1)
    migrating.join()
    assert current_revision(engine) == head_revision()


def test_a_schema_from_a_newer_release_is_refused_at_once(engine: Engine) -> None:
    from ferry.registry.db import SchemaNotReady, wait_for_schema

    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(SchemaNotReady, match="at f00d, newer than this release's"):
        wait_for_schema(engine, timeout_s=60)
