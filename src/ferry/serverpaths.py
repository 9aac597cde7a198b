"""The server's own directories, taken out of every message a client can read.

Libraries quote absolute paths in their errors (onnxruntime names the data directory when
an ONNX file's external data points outside its folder; the OS names the file it could
not open). The server log keeps them; answers over REST and gRPC, load failures in the
repository index and the web app, and a failed version's reason show a label instead:
``<data dir>/registry.db``, ``<tmp>/...``."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

# A path ends where a name cannot go on: "/srv/data" is not taken out of "/srv/database".
_END = r"(?=[/\\\s\"'`:,;)\]}>]|$)"


class ServerPaths:
    """Known directories and files, each with the label clients see in its place; the
    longest (most specific) match wins, so a file in the data directory under the
    working directory reads ``<data dir>/...`` rather than ``./ferry-data/...``."""

    def __init__(self, places: Mapping[str, str] | None = None) -> None:
        self._places: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        for path, label in (places or {}).items():
            self.add(path, label)

    def add(self, path: Path | str, label: str) -> None:
        """``path`` (as given, absolute and with links resolved) reads ``label`` from now on.
        Relative paths are made absolute: a relative text such as ``models`` is too common
        in messages to replace on its own."""
        for variant in _variants(Path(path)):
            self._places.setdefault(variant, label)
        if self._places:
            alternatives = "|".join(re.escape(p) for p in sorted(self._places, key=len, reverse=True))
            self._pattern = re.compile(f"(?:{alternatives}){_END}")

    def extend(self, other: ServerPaths) -> None:
        for path, label in other._places.items():
            self.add(path, label)

    def scrub(self, message: str) -> str:
        if self._pattern is None or not message:
            return message
        return self._pattern.sub(lambda match: self._places[match.group()], message)

    __call__ = scrub


def server_paths(
    data_dir: Path | None = None,
    database: Path | None = None,
    repositories: Iterable[Path] = (),
) -> ServerPaths:
    """The directories every server has (the temporary directory, the home and working
    directories, Python's installation) plus this server's data directory, its SQLite
    database and the model repositories it serves (shown by their own names, as clients
    know models by the repository's layout)."""
    paths = ServerPaths()
    for repository in repositories:
        paths.add(repository, Path(repository).resolve().name or "<models>")
    if data_dir is not None:
        paths.add(data_dir, "<data dir>")
    if database is not None:
        paths.add(database, "<registry database>")
    paths.add(tempfile.gettempdir(), "<tmp>")
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        paths.add(prefix, "<python>")
    paths.add(Path.cwd(), ".")
    paths.add(Path.home(), "~")
    return paths


def _variants(path: Path) -> set[str]:
    absolute = Path(os.path.abspath(path))
    found = {str(absolute), str(absolute.resolve())}
    if path.is_absolute():
        found.add(str(path))
    # The root, or a path of one short component, would take parts of unrelated text.
    return {text for text in found if len(text) > 1 and text.strip(os.sep)}
