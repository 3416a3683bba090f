"""Shared fixtures: one real build of the repository's graph per test session, in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cmc_kg.build import build
from cmc_kg.query import open_store
from cmc_kg.settings import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Settings, object]:
    """The repository's graph built into a temporary build folder: (settings, build report)."""
    settings = Settings(build_dir=tmp_path_factory.mktemp("build"))
    return settings, build(settings)


@pytest.fixture(scope="session")
def store(built):
    """The built graph loaded in Oxigraph, as the query layer and server see it."""
    return open_store(built[0])


@pytest.fixture
def repo_copy(tmp_path) -> Settings:
    """A private copy of the edited sources (ontology/, graph/), to break in tests."""
    for folder in ("ontology", "graph"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return Settings(root=tmp_path)
