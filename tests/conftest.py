"""Shared fixtures: one real build of the repository's graph per test session, in a temporary folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """A real `cmc-kg serve` process on 127.0.0.1."""

    url: str
    process: subprocess.Popen


def start_server(build_dir: Path, *flags: str, env: dict | None = None) -> LiveServer:
    """Start `cmc-kg serve` on a free port and wait until /health answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cmc_kg.cli", "serve", "--port", str(port),
                                "--build-dir", str(build_dir), *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return LiveServer(url, process)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stdout.read())
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("cmc-kg serve did not answer /health within 60 s")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(built):
    """One `cmc-kg serve` over the session's build, with default settings, for every test that needs HTTP."""
    live = start_server(built[0].build_dir)
    yield live
    stop_server(live)
