"""Start-up repair after a crash, so the database and the artifact store agree: versions
a dead process left half-validated are failed, blobs no version records are deleted, and
partial uploads are removed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ferry.artifacts import ArtifactStore
from ferry.registry.records import Version
from ferry.registry.repository import Registry

log = logging.getLogger("ferry.registry")


@dataclass
class CleanupReport:
    interrupted: list[Version] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    temp_files_deleted: int = 0


def cleanup(registry: Registry, store: ArtifactStore, older_than_s: float = 0.0) -> CleanupReport:
    """Repair what a killed process left behind. ``older_than_s`` = 0 is right when this is
    the only process; with several on one registry, pass a grace period longer than an
    upload takes so a live process's upload in progress is not mistaken for debris."""
    report = CleanupReport()
    report.interrupted = registry.fail_interrupted(older_than_s)
    for version in report.interrupted:
        log.warning("%s version %d was interrupted during upload or validation", version.model, version.number)
    # Temp files first, then orphans: read the referenced digests after the store listing
    # so an upload that records its version meanwhile is seen as referenced.
    report.temp_files_deleted = store.cleanup_temp(older_than_s)
    candidates = list(store.digests())
    referenced = registry.referenced_digests()
    cutoff = time.time() - older_than_s
    for digest in candidates:
        if digest in referenced or (older_than_s > 0 and store.modified_at(digest) > cutoff):
            continue
        if store.delete(digest):
            report.orphans_deleted.append(digest)
    if report.orphans_deleted or report.temp_files_deleted:
        log.info(
            "artifact store: removed %d orphan artifacts and %d partial uploads",
            len(report.orphans_deleted),
            report.temp_files_deleted,
        )
    return report


def delete_version(registry: Registry, store: ArtifactStore, model: str, number: int) -> Version:
    """Delete a version and, unless another version shares its bytes, its artifact. The
    record goes first: a crash in between leaves an orphan blob, never a dangling record."""
    gone = registry.delete_version(model, number)
    if not registry.digest_in_use(gone.artifact_digest):
        store.delete(gone.artifact_digest)
    return gone
