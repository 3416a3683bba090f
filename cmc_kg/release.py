"""Dated releases of the build (`cmc-kg release VERSION`).

A release names a build: its version, the day it was made, the as-at date of every source, the checksum of each
file, and, against the previous release, what changed (CHANGES.md, changes.ttl from `cmc-kg diff`). The files are
written next to the build's dump, where the server's /dumps/ page and entity pages read them, and a copy of the
whole release is kept under releases/<version>/ so that the next release can be compared with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .diff import DUMP_NAME, RELEASE_FILE, diff, load_snapshot, to_markdown, to_rdf
from .query import internal_query, run_query
from .settings import Paths

__all__ = ["make_release", "read_release", "latest_release", "source_dates", "ReleaseError", "CHANGES_MARKDOWN", "CHANGES_RDF", "RELEASE_FILES"]

CHANGES_MARKDOWN = "CHANGES.md"
CHANGES_RDF = "changes.ttl"
CHECKSUMS = "SHA256SUMS"
# The files a release adds to the build folder, which the server publishes under /dumps/.
RELEASE_FILES = (RELEASE_FILE, CHANGES_MARKDOWN, CHANGES_RDF)
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


class ReleaseError(Exception):
    """A release cannot be made; the message says why and nothing was written."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_dates(dump: Path) -> dict[str, str]:
    """Each registered source's key -> its as-at date (empty where the source gives none), from a build's dump."""
    store = ox.Store()
    store.bulk_load(path=str(dump), format=ox.RdfFormat.N_QUADS)
    rows = run_query(store, internal_query("source-dates"))
    assert isinstance(rows, ox.QuerySolutions), "a SELECT query answers with rows"
    return dict(sorted((row["key"].value, row["asof"].value if row["asof"] else "") for row in rows))


def read_release(build_dir: Path) -> dict | None:
    """The release record beside a build's dump, or None; whether it is still that dump's is for the caller to
    check (release["files"]["cmc-kg.nq"]["sha256"])."""
    try:
        return json.loads((build_dir / RELEASE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def latest_release(releases_dir: Path) -> Path | None:
    """The most recently released folder under releases/, by release date then version."""
    found = [(json.loads((p / RELEASE_FILE).read_text(encoding="utf-8")).get("released", ""), p.name, p)
             for p in releases_dir.glob("*/") if (p / RELEASE_FILE).exists()] if releases_dir.is_dir() else []
    return max(found)[2] if found else None


def make_release(settings: Paths, version: str, since: Path | None, releases_dir: Path,
                 today: str | None = None) -> dict:
    """Write release.json (and the changes since a previous release) beside the build's dump and keep a copy of the
    release in releases/<version>/; returns the release record."""
    if not VERSION.match(version):
        raise ReleaseError(f"version {version!r}: use letters, digits, '.', '_' or '-' (e.g. 2026.02)")
    dump = settings.dump_file
    if not dump.exists():
        raise ReleaseError(f"{dump} does not exist: run `cmc-kg build` first")
    target = releases_dir / version
    if target.exists():
        raise ReleaseError(f"{target} exists: a release is never overwritten; choose a new version")
    build_dir = settings.build_dir
    release: dict[str, Any] = {"version": version,
                               "released": today or dt.datetime.now(dt.timezone.utc).date().isoformat(),
                               "sources_as_at": source_dates(dump), "since": None}
    staging = Path(tempfile.mkdtemp(dir=build_dir, prefix=".release-"))
    try:
        files = [DUMP_NAME]
        if since is not None:
            before, after = load_snapshot(since), load_snapshot(dump)
            changes = diff(before, after)
            release["since"] = before.version
            (staging / CHANGES_MARKDOWN).write_text(to_markdown(changes, before.version, version), encoding="utf-8")
            to_rdf(changes, before.version, version).serialize(staging / CHANGES_RDF, format="turtle", encoding="utf-8")
            release["changes"] = len(changes)
            files += [CHANGES_MARKDOWN, CHANGES_RDF]
        release["files"] = {name: {"bytes": (dump if name == DUMP_NAME else staging / name).stat().st_size,
                                   "sha256": _sha256(dump if name == DUMP_NAME else staging / name)}
                            for name in files}
        (staging / RELEASE_FILE).write_text(json.dumps(release, indent=2) + "\n", encoding="utf-8")
        (staging / CHECKSUMS).write_text("".join(f"{info['sha256']}  {name}\n" for name, info in release["files"].items()),
                                         encoding="utf-8")
        # The archived copy first (a new folder, renamed into place), then the files beside the dump.
        releases_dir.mkdir(parents=True, exist_ok=True)
        archive = Path(tempfile.mkdtemp(dir=releases_dir, prefix=f".{version}-"))
        shutil.copy2(dump, archive / DUMP_NAME)
        for path in staging.iterdir():
            shutil.copy2(path, archive / path.name)
        archive.chmod(0o755)
        os.replace(archive, target)
        for name in RELEASE_FILES:
            if not (staging / name).exists():
                (build_dir / name).unlink(missing_ok=True)
        for name in (CHANGES_MARKDOWN, CHANGES_RDF, RELEASE_FILE):  # release.json last: it vouches for the others
            if (staging / name).exists():
                os.replace(staging / name, build_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return release
