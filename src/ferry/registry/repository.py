"""Registry: the queries behind models, versions, stages and traffic.

Every write locks its model's row first (SELECT ... FOR UPDATE on PostgreSQL; on SQLite
the whole transaction begins IMMEDIATE), so two writers to one model take turns: version
numbers stay distinct, and a version cannot be archived while another request is
pointing a stage at it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.artifacts import Artifact, check_digest
from ferry.errors import Conflict, InvalidInput, NotFound
from ferry.names import MAX_VERSION, check_file_name, check_model_name, is_stage_name
from ferry.registry.db import REVISION_LOCK, WRITE
from ferry.registry.records import Model, Traffic, Version
from ferry.registry.schema import (
    ModelRow,
    StageHistoryRow,
    StageRow,
    TrafficRow,
    VersionRow,
    VersionState,
    utcnow,
)

S = VersionState
# Which state changes make sense; anything else is a caller's bug or a race, and is refused.
TRANSITIONS: dict[VersionState, set[VersionState]] = {
    S.UPLOADED: {S.VALIDATING, S.FAILED},
    S.VALIDATING: {S.READY, S.FAILED},
    S.READY: {S.ARCHIVED, S.FAILED},
    S.FAILED: {S.VALIDATING, S.ARCHIVED},
    S.ARCHIVED: {S.READY, S.VALIDATING},
}
INTERRUPTED = "interrupted"


class Registry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @classmethod
    def from_engine(cls, engine: Engine) -> Registry:
        return cls(sessionmaker(engine, expire_on_commit=False))

    def database_file(self) -> Path | None:
        """The SQLite file the registry is kept in; None for a server database."""
        url = getattr(self._sessions.kw.get("bind"), "url", None)
        if url is None or url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    # -- models ---------------------------------------------------------------------

    def create_model(
        self, name: str, description: str = "", task: str = "", labels: Mapping[str, str] | None = None
    ) -> Model:
        check_model_name(name)
        labels = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise InvalidInput("labels must map strings to strings")
        try:
            with self._write() as session:
                if session.scalar(select(ModelRow.id).where(ModelRow.name == name)) is not None:
                    raise Conflict(f"model {name!r} already exists")
                row = ModelRow(name=name, description=description, task=task, labels=labels, created_at=utcnow())
                session.add(row)
                session.flush()
                session.add(TrafficRow(model_id=row.id, weights={}, shadow_percent=0, updated_at=utcnow()))
                # A new model is news to the other server processes too.
                self._bump_revision(session, row.id)
                return Model.of(row)
        except IntegrityError as exc:  # lost a race with another process creating it
            raise Conflict(f"model {name!r} already exists") from exc

    def get_model(self, name: str) -> Model:
        with self._read() as session:
            return Model.of(self._model(session, name))

    def list_models(self) -> list[Model]:
        with self._read() as session:
            return [Model.of(row) for row in session.scalars(select(ModelRow).order_by(ModelRow.name))]

    # -- versions -------------------------------------------------------------------

    def add_version(
        self, model_name: str, runtime: str, artifact: Artifact, filename: str, uploaded_by: str = ""
    ) -> Version:
        """Record an artifact already in the store as the model's next version, in state
        ``uploaded``. Store first, record second: a crash in between leaves only an
        orphan blob, which start-up cleanup deletes."""
        check_digest(artifact.digest)
        if not is_stage_name(runtime):
            raise InvalidInput(f"invalid runtime name {runtime!r}")
        check_file_name(filename)
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            model.last_version += 1
            row = VersionRow(
                model_id=model.id,
                number=model.last_version,
                runtime=runtime,
                artifact_digest=artifact.digest,
                artifact_size=artifact.size,
                filename=filename,
                state=S.UPLOADED.value,
                uploaded_by=uploaded_by,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return Version.of(row, model.name)

    def get_version(self, model_name: str, number: int) -> Version:
        with self._read() as session:
            model = self._model(session, model_name)
            return Version.of(self._version(session, model, number), model.name)

    def list_versions(self, model_name: str) -> list[Version]:
        with self._read() as session:
            model = self._model(session, model_name)
            rows = session.scalars(
                select(VersionRow).where(VersionRow.model_id == model.id).order_by(VersionRow.number)
            )
            return [Version.of(row, model.name) for row in rows]

    def set_version_state(
        self,
        model_name: str,
        number: int,
        state: VersionState | str,
        reason: str | None = None,
        signature: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        warmup_ms: float | None = None,
    ) -> Version:
        try:
            new = VersionState(state)
        except ValueError:
            raise InvalidInput(f"unknown version state {state!r}") from None
        if warmup_ms is not None and warmup_ms < 0:
            raise InvalidInput("warmup_ms must not be negative")
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            row = self._version(session, model, number)
            old = VersionState(row.state)
            if new != old and new not in TRANSITIONS[old]:
                raise Conflict(f"{model.name} version {number} is {old}; it cannot become {new}")
            if old == S.READY and new != S.READY:
                self._refuse_if_in_use(session, model, row, f"mark it {new}")
            row.state = new.value
            row.failure_reason = reason if new == S.FAILED else None
            if signature is not None:
                row.signature = signature
            if config is not None:
                row.config = config
            if warmup_ms is not None:
                row.warmup_ms = warmup_ms
            return Version.of(row, model.name)

    def archive_version(self, model_name: str, number: int) -> Version:
        return self.set_version_state(model_name, number, S.ARCHIVED)

    def delete_version(self, model_name: str, number: int) -> Version:
        """Remove a version's record; the caller deletes the artifact if no other version
        shares it (``digest_in_use``), or leaves that to start-up cleanup."""
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            row = self._version(session, model, number)
            self._refuse_if_in_use(session, model, row, "delete it")
            gone = Version.of(row, model.name)
            session.delete(row)
            return gone

    def digest_in_use(self, digest: str) -> bool:
        with self._read() as session:
            query = select(VersionRow.id).where(VersionRow.artifact_digest == digest).limit(1)
            return session.scalar(query) is not None

    def referenced_digests(self) -> set[str]:
        with self._read() as session:
            return set(session.scalars(select(VersionRow.artifact_digest).distinct()))

    def fail_interrupted(self, older_than_s: float = 0.0) -> list[Version]:
        """Mark versions stuck in uploaded/validating as failed ("interrupted"): whoever
        was validating them died. A grace period spares other live processes' uploads."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stuck = (S.UPLOADED.value, S.VALIDATING.value)
        with self._write() as session:
            rows = session.execute(
                select(VersionRow, ModelRow.name)
                .join(ModelRow, VersionRow.model_id == ModelRow.id)
                .where(VersionRow.state.in_(stuck))
                .with_for_update(of=VersionRow)
            ).all()
            failed = []
            for row, name in rows:
                if row.created_at <= cutoff:
                    row.state, row.failure_reason = S.FAILED.value, INTERRUPTED
                    failed.append(Version.of(row, name))
            return failed

    # -- stages and traffic -----------------------------------------------------------

    def set_stage(self, model_name: str, stage: str, number: int) -> None:
        if not is_stage_name(stage):
            raise InvalidInput(f"invalid stage name {stage!r}: [a-z][a-z0-9_-]*, at most 64 characters")
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            version = self._ready_version(session, model, number)
            row = session.scalar(select(StageRow).where(StageRow.model_id == model.id, StageRow.name == stage))
            if row is None:
                session.add(StageRow(model_id=model.id, name=stage, version_id=version.id))
            elif row.version_id != version.id:
                row.version_id = version.id
            else:  # already there: nothing to undo later
                self._bump_revision(session, model.id)
                return
            self._push_history(session, model.id, stage, version.id)
            self._bump_revision(session, model.id)

    def delete_stage(self, model_name: str, stage: str) -> None:
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            result = session.execute(delete(StageRow).where(StageRow.model_id == model.id, StageRow.name == stage))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"model {model.name!r} has no stage {stage!r}")
            self._push_history(session, model.id, stage, None)
            self._bump_revision(session, model.id)

    def rollback(self, model_name: str, stage: str = "production") -> int:
        """Undo the latest change of ``stage`` (a promotion, or its removal): pop its top
        history entry, point the stage at the version of the entry beneath, and clear the
        canary split and the shadow, in one transaction. Rolling back again goes further
        back. Returns the version the stage points at now; ``Conflict`` when there is no
        earlier version, or it is no longer ready."""
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            entries = list(
                session.scalars(
                    select(StageHistoryRow)
                    .where(StageHistoryRow.model_id == model.id, StageHistoryRow.stage == stage)
                    .order_by(StageHistoryRow.id.desc())
                    .limit(2)
                )
            )
            if len(entries) < 2:
                raise Conflict(f"nothing to roll back to: {model.name} has no earlier {stage} version")
            top, previous = entries
            if previous.version_id is None:
                raise Conflict(
                    f"nothing to roll back to: {model.name} had no {stage} version before (or it was deleted)"
                )
            version = session.get(VersionRow, previous.version_id)
            assert version is not None  # the foreign key sets version_id NULL on delete
            if version.state != S.READY.value:
                raise Conflict(
                    f"cannot roll back {model.name} to version {version.number}: it is {version.state}, not ready"
                )
            session.delete(top)
            row = session.scalar(select(StageRow).where(StageRow.model_id == model.id, StageRow.name == stage))
            if row is None:
                session.add(StageRow(model_id=model.id, name=stage, version_id=version.id))
            else:
                row.version_id = version.id
            traffic = self._traffic_row(session, model.id)
            traffic.weights, traffic.shadow_version, traffic.shadow_percent = {}, None, 0
            self._bump_revision(session, model.id)
            return version.number

    def stage_history(self, model_name: str, stage: str = "production") -> list[int | None]:
        """The stage's undo stack, oldest first: version numbers, None where the stage was
        removed (or the version has since been deleted). The last entry is current."""
        with self._read() as session:
            model = self._model(session, model_name)
            rows = session.execute(
                select(VersionRow.number)
                .select_from(StageHistoryRow)
                .outerjoin(VersionRow, StageHistoryRow.version_id == VersionRow.id)
                .where(StageHistoryRow.model_id == model.id, StageHistoryRow.stage == stage)
                .order_by(StageHistoryRow.id)
            )
            return [number for (number,) in rows]

    def get_stages(self, model_name: str) -> dict[str, int]:
        with self._read() as session:
            model = self._model(session, model_name)
            return self._stages(session, model.id)

    def set_traffic(
        self, model_name: str, weights: Mapping[int, int], shadow: int | None = None, shadow_percent: int = 0
    ) -> Traffic:
        """Split requests over ready versions (integer weights summing to 100), and copy
        ``shadow_percent`` of them to a ``shadow`` version whose answers are discarded."""
        _check_weights(weights)
        _check_shadow(weights, shadow, shadow_percent)
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            for number in [*weights, *([shadow] if shadow is not None else [])]:
                self._ready_version(session, model, number)
            row = self._traffic_row(session, model.id)
            row.weights = {str(number): weight for number, weight in sorted(weights.items()) if weight > 0}
            row.shadow_version, row.shadow_percent = shadow, shadow_percent
            self._bump_revision(session, model.id)
            return Traffic.of(row, model.name)

    def clear_traffic(self, model_name: str) -> Traffic:
        """No split and no shadow: unversioned requests follow the production stage again."""
        with self._write() as session:
            model = self._model(session, model_name, lock=True)
            row = self._traffic_row(session, model.id)
            row.weights, row.shadow_version, row.shadow_percent = {}, None, 0
            self._bump_revision(session, model.id)
            return Traffic.of(row, model.name)

    def get_traffic(self, model_name: str) -> Traffic:
        with self._read() as session:
            model = self._model(session, model_name)
            return Traffic.of(self._traffic_row(session, model.id), model.name)

    def revision(self) -> int:
        """Grows on every stage or traffic change of any model: poll it to notice them."""
        with self._read() as session:
            return session.scalar(select(func.max(TrafficRow.revision))) or 0

    # -- helpers ------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            session.connection(execution_options={WRITE: True})  # SQLite: BEGIN IMMEDIATE
            yield session

    def _model(self, session: Session, name: str, lock: bool = False) -> ModelRow:
        query = select(ModelRow).where(ModelRow.name == name)
        row = session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(f"model {name!r} not found")
        return row

    def _version(self, session: Session, model: ModelRow, number: int) -> VersionRow:
        row = None
        # A number past the database's 64-bit integers names no version (not a driver error).
        if isinstance(number, int) and not isinstance(number, bool) and 0 < number <= MAX_VERSION:
            row = session.scalar(select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.number == number))
        if row is None:
            raise NotFound(f"model {model.name!r} has no version {number!r}")
        return row

    def _ready_version(self, session: Session, model: ModelRow, number: int) -> VersionRow:
        row = self._version(session, model, number)
        if row.state != S.READY.value:
            raise InvalidInput(f"{model.name} version {number} is {row.state}; only ready versions can take traffic")
        return row

    def _stages(self, session: Session, model_id: int) -> dict[str, int]:
        rows = session.execute(
            select(StageRow.name, VersionRow.number)
            .join(VersionRow, StageRow.version_id == VersionRow.id)
            .where(StageRow.model_id == model_id)
            .order_by(StageRow.name)
        )
        return {name: number for name, number in rows}

    def _traffic_row(self, session: Session, model_id: int) -> TrafficRow:
        row = session.get(TrafficRow, model_id)
        if row is None:  # not expected: create_model adds it
            row = TrafficRow(model_id=model_id, weights={}, shadow_percent=0, revision=0, updated_at=utcnow())
            session.add(row)
        return row

    def _refuse_if_in_use(self, session: Session, model: ModelRow, row: VersionRow, action: str) -> None:
        stages = [name for name, number in self._stages(session, model.id).items() if number == row.number]
        if stages:
            raise Conflict(f"cannot {action}: {model.name} version {row.number} is stage {', '.join(stages)}")
        if Traffic.of(self._traffic_row(session, model.id), model.name).uses(row.number):
            raise Conflict(f"cannot {action}: {model.name} version {row.number} takes traffic")

    def _push_history(self, session: Session, model_id: int, stage: str, version_id: int | None) -> None:
        session.add(StageHistoryRow(model_id=model_id, stage=stage, version_id=version_id, changed_at=utcnow()))

    def _bump_revision(self, session: Session, model_id: int) -> None:
        # Global max + 1, under a lock: with per-model counters, or a sequence whose values
        # may commit out of order, a poller could miss a change.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(REVISION_LOCK)))
        top = session.scalar(select(func.max(TrafficRow.revision))) or 0
        row = self._traffic_row(session, model_id)
        row.revision, row.updated_at = top + 1, utcnow()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_weights(weights: Mapping[int, int]) -> None:
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidInput("traffic needs at least one version and its weight")
    for number, weight in weights.items():
        if not _is_int(number) or not _is_int(weight) or weight < 0:
            raise InvalidInput(f"traffic weights are whole numbers >= 0 per version number, not {number!r}={weight!r}")
    if sum(weights.values()) != 100:
        raise InvalidInput(f"traffic weights must add up to 100, not {sum(weights.values())}")


def _check_shadow(weights: Mapping[int, int], shadow: int | None, percent: int) -> None:
    if not _is_int(percent) or not 0 <= percent <= 100:
        raise InvalidInput(f"shadow percent must be a whole number from 0 to 100, not {percent!r}")
    if shadow is None:
        if percent:
            raise InvalidInput("a shadow percent needs a shadow version")
        return
    if not _is_int(shadow):
        raise InvalidInput(f"invalid shadow version {shadow!r}")
    if weights.get(shadow, 0) > 0:
        raise InvalidInput(f"version {shadow} cannot be both the shadow and take traffic")
