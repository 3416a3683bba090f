"""Shared fixtures: one real build of the repository's graph per test run (shared by pytest-xdist workers), in a
temporary folder; the server over it either in this process (the Flask app and its test client: no port, no worker
process) or as a real `cmc-kg serve` on loopback; Debian's Chromium. Markers (declared in pyproject.toml): `browser`
and `system` tests count as `slow` too, so `-m "not slow"` is the fast subset."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from cmc_kg.build import BuildReport, build
from cmc_kg.query import open_store
from cmc_kg.settings import REPO_ROOT, Paths


def pytest_collection_modifyitems(items):
    """A test that uses Chromium is a browser test; an `alone` test is a system test; browser and system tests are
    slow, so `-m "not slow"` leaves them out without each saying so twice.

    Order, which pytest-xdist's workers take whole files in: tests that need no build first, so that they keep both
    workers busy while the build runs (see pytest_collection_finish); then the files that start real servers,
    which are the longest, so that no long file is left to run alone at the end."""
    for item in items:
        if "browser" in item.fixturenames and not item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)
        if item.get_closest_marker("alone") and not item.get_closest_marker("system"):
            item.add_marker(pytest.mark.system)
        if item.get_closest_marker("browser") or item.get_closest_marker("system"):
            item.add_marker(pytest.mark.slow)
    with_servers = {item.path for item in items if item.get_closest_marker("system")}
    items.sort(key=lambda item: ("built" in item.fixturenames, item.path not in with_servers))


def _shared_folder(tmp_path_factory) -> Path:
    """This run's temporary folder, the same for every pytest-xdist worker (each has its own below it), or the one
    `tasks.py test` names for both of its pytest runs."""
    if named := os.environ.get("CMC_TESTS_SHARED"):
        return Path(named)
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def session_build(shared: Path, announce: bool = False) -> tuple[Paths, BuildReport]:
    """The repository's graph built into ``shared``/session-build, or read from there if a process of this run
    built it already: a lock makes the others wait for the one that builds. ``announce``: print a line once the
    lock is held."""
    settings = Paths(build_dir=Path(shared) / "session-build")
    with open(Path(shared) / "session-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if the build fails
        if announce:
            print("locked", flush=True)
        if settings.report_file.exists():
            saved = json.loads(settings.report_file.read_text(encoding="utf-8"))
            return settings, BuildReport(**{f.name: saved[f.name] for f in fields(BuildReport)})
        return settings, build(settings)


EARLY_BUILD: list[subprocess.Popen] = []


def pytest_collection_finish(session):
    """Under pytest-xdist, the first worker to have collected tests that need the build starts it in a process
    of its own, and both workers run the tests that need none meanwhile (if it fails, the first test that needs
    it builds again and reports the error)."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not any("built" in item.fixturenames for item in session.items):
        return
    shared = _shared_folder(session.config._tmp_path_factory)
    try:
        (shared / "session-build.started").touch(exist_ok=False)
    except FileExistsError:
        return  # the other worker started it
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys, conftest; conftest.session_build(sys.argv[1], announce=True)", str(shared)],
        cwd=Path(__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    process.stdout.readline()  # it holds the lock (or has failed): a test that needs the build now waits for it
    EARLY_BUILD.append(process)


def pytest_unconfigure(config):
    for process in EARLY_BUILD:
        try:
            process.wait(timeout=600)  # the other worker may still be waiting for it
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Paths, BuildReport]:
    """The repository's graph built into a temporary build folder, once per test run: (settings, build report)."""
    return session_build(_shared_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def store(built):
    """The built graph loaded in Oxigraph, as the query layer and server see it."""
    return open_store(built[0])


@pytest.fixture
def repo_copy(tmp_path) -> Paths:
    """A private copy of the edited sources (ontology/, graph/), to break in tests."""
    for folder in ("ontology", "graph"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return Paths(root=tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcessEngine:
    """Runs each query in this process on an Oxigraph store: the engine's checks and serialisation without its
    worker processes, so without its time limit (tests of limits use a real server)."""

    def __init__(self, store, policy=None):
        import pyoxigraph as ox

        from cmc_kg.contract import QueryPolicy
        from cmc_kg.query import default_graph_size

        self.store, self.policy, self.triples = store, policy or QueryPolicy(), default_graph_size(store)
        self.graphs = frozenset(g.value for g in store.named_graphs() if isinstance(g, ox.NamedNode))
        self.build_id = self.loaded = f"in-process-{id(store)}"
        self.network_filter = None

    def run(self, request):
        from cmc_kg.engine import evaluate

        return evaluate(self.store, request, self.policy, self.graphs)

    def latest(self):
        return self.loaded

    def live_workers(self):
        return None

    def close(self, wait: float = 0.0):
        pass

    def retire(self):
        pass


@dataclass
class InProcessServer:
    """The server's Flask app answered by its test client; ``url`` is its base_url, which `exchange` recognises."""

    url: str
    client: object


IN_PROCESS: dict[str, InProcessServer] = {}


def in_process_server(store, url: str = "http://in-process.test", **settings) -> InProcessServer:
    """The app over ``store`` with these server settings, its requests answered in this process by `exchange`."""
    from cmc_kg.contract import QueryPolicy
    from cmc_kg.settings import Settings
    from cmc_kg.server import create_app

    config = Settings(base_url=url, reload_interval=0, **settings)
    policy = QueryPolicy(frozenset(config.service_allowlist), config.max_nesting)
    app = create_app(config, engine=InProcessEngine(store, policy))
    IN_PROCESS[url] = InProcessServer(url, app.test_client())
    return IN_PROCESS[url]


@pytest.fixture(scope="session")
def app_server(built, store) -> InProcessServer:
    """The server over the session's build, in this process: for protocol and page tests that need no socket,
    no worker process and no time limit."""
    return in_process_server(store, build_dir=str(built[0].build_dir))


def exchange(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None,
             timeout: float = 60):
    """One HTTP exchange, (status, headers, body bytes), with an HTTP error status an answer too; a URL under an
    in-process server's base is answered by its test client, any other over the network."""
    for base, app in IN_PROCESS.items():
        if url == base or url.startswith(base + "/"):
            parts = urllib.parse.urlsplit(url)
            answer = app.client.open(parts.path, method=method, query_string=parts.query, data=body,
                                     headers=dict(headers or {}))
            message = http.client.HTTPMessage()  # the headers as urllib gives them, whichever way they came
            for name, value in answer.headers.items():
                message[name] = value
            return answer.status_code, message, answer.get_data()
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as failure:
        return failure.code, failure.headers, failure.read()


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
                raise RuntimeError(process.stdout.read()) from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("cmc-kg serve did not answer /health within 60 s")


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, and SIGKILL for a process still running after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop_server(server: LiveServer) -> None:
    stop_process(server.process)


@pytest.fixture(scope="session")
def server(built):
    """One `cmc-kg serve` over the session's build, with default settings, for every test that needs HTTP."""
    live = start_server(built[0].build_dir)
    yield live
    stop_server(live)


CHROMIUM = Path("/usr/bin/chromium")
# Flags for Debian's Chromium as root on a machine whose only network is loopback.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (never a browser Playwright downloads)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (python3 tasks.py test does)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def watched_page(browser):
    """A new 1280x900 page that records every URL it requests and every console or page error it reports.

    :returns: (context, page, requests, errors); close the context when done.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(20_000)
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return context, page, requests, errors


OXIGRAPH = Path(sys.executable).parent / "oxigraph"


def start_oxigraph(location: Path | None, data: Path | None = None) -> tuple[str, subprocess.Popen]:
    """An Oxigraph server on a free loopback port (read-only over ``data`` when given; in memory when ``location`` is
    None); returns its base URL."""
    if data is not None:
        assert location is not None, "a read-only server reads a store on disk"
        subprocess.run([str(OXIGRAPH), "load", "--location", str(location), "--file", str(data)],
                       check=True, capture_output=True, timeout=60)
    port = free_port()
    command = "serve-read-only" if data is not None else "serve"
    on_disk = ["--location", str(location)] if location is not None else []
    process = subprocess.Popen([str(OXIGRAPH), command, *on_disk, "--bind", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/query?query=ASK%7B%7D", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return url, process
