"""The wheel works outside the checkout: built from a copy of the sources, installed into a fresh virtualenv in
a temporary folder and run there (build, query, export, serve: ASK, an entity page, the query page, a static
file), offline: the virtualenv reuses the dependencies already installed in the one running the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.parse
import urllib.request
import venv
from pathlib import Path

import pytest

from cmc_kg import __version__
from conftest import free_port
from cmc_kg.settings import REPO_ROOT

# What the wheel is built from (pyproject.toml's packages and their package-dir folders, and the readme).
SOURCES = ("pyproject.toml", "README.md", "cmc_kg", "server", "ontology", "graph", "queries")
pytestmark = pytest.mark.system  # pip builds and installs a wheel, which builds the graph and serves it

ASK = "ASK { treaty:ccm a cmc:Treaty ; rdfs:label ?label }"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(cmc-kg program, environment, folder to run it in, the user data folder) of a wheel installed in a new
    virtualenv; the sources are copied first, so building leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(work / "dist"), str(source)], check=True, timeout=300, capture_output=True)
    [wheel] = (work / "dist").glob("cmc_kg-*.whl")
    environment = work / "venv"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies: this interpreter's site-packages, after the new one's (a .pth line appends it to
    # sys.path; the .pth files in it, such as the checkout's editable install, are not run).
    Path(purelib, "cmc_kg_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300, capture_output=True)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "CMC_KG_", "VIRTUAL_ENV"))}
    env.update(HOME=str(work / "home"), XDG_DATA_HOME=str(work / "data"))
    return environment / "bin" / "cmc-kg", env, elsewhere, work / "data"


def run(installed, *arguments: str) -> subprocess.CompletedProcess:
    program, env, elsewhere, _ = installed
    return subprocess.run([str(program), *arguments], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_wheel_holds_the_package_and_its_data_and_nothing_from_the_checkout(installed):
    program, env, elsewhere, _ = installed
    probe = ("import importlib.util, cmc_kg, cmc_kg.server; print(cmc_kg.__file__); print(cmc_kg.server.__file__); "
             "print(importlib.util.find_spec('server'))")
    lines = subprocess.run([str(program.parent / "python"), "-c", probe], cwd=elsewhere, env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    site = program.parent.parent
    assert all(Path(line).is_relative_to(site) for line in lines[:2]), lines  # not the checkout's copy
    assert lines[2] == "None"  # no top-level module `server` in the user's site-packages


def test_build_query_export_and_serve_in_any_folder(installed, built):
    _, _, elsewhere, data_home = installed
    result = run(installed, "build")
    assert result.returncode == 0, result.stderr
    dump = data_home / "cmc-kg" / __version__ / "build" / "cmc-kg.nq"
    assert str(dump) in result.stdout
    # Every data file shipped, and the build is deterministic: the installed data, built in another process
    # (another hash seed), gives the session's dump byte for byte.
    assert dump.read_bytes() == built[0].dump_file.read_bytes()
    assert json.loads((dump.parent / "build-report.json").read_text())["dump_sha256"] == built[1].dump_sha256
    assert not any(elsewhere.iterdir())  # nothing written in the folder it ran in
    result = run(installed, "query", "--format", "json", ASK)
    assert result.returncode == 0 and json.loads(result.stdout)["boolean"] is True, result.stderr
    result = run(installed, "export", "--format", "turtle", "-o", "graph.ttl")
    assert result.returncode == 0 and (elsewhere / "graph.ttl").stat().st_size > 100_000, result.stderr
    result = run(installed, "import-tables")  # it would rewrite the installed data: refused
    assert result.returncode == 1 and "--root" in result.stderr

    program, env, _, _ = installed
    port = free_port()
    server = subprocess.Popen([str(program), "serve", "--port", str(port), "--workers", "1", "--reload-interval", "0"],
                              cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)

        def get(path: str, accept: str = "text/html") -> tuple[str, str]:
            request = urllib.request.Request(url + path, headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.headers.get_content_type(), response.read().decode("utf-8")

        kind, body = get("/sparql?" + urllib.parse.urlencode({"query": ASK}), "application/sparql-results+json")
        assert json.loads(body)["boolean"] is True
        kind, body = get("/id/treaty/ccm")
        assert kind == "text/html" and "Convention on Cluster Munitions" in body
        kind, body = get("/query")  # the templates shipped
        assert kind == "text/html" and "<textarea" in body
        kind, body = get("/static/style.css")  # the static files shipped
        assert kind == "text/css" and body.strip()
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    assert "Traceback" not in output, output
