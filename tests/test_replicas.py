"""The recipe past one process (README, "More than one process"): `cmc-kg serve` replicas sharing one build behind
nginx, run with the shipped deploy/nginx/cmc-kg.conf, its ports and cache folder replaced. nginx caches answers
briefly and revalidates them by ETag, so a new build is not served stale; a replica killed under load costs no
request that nginx could still send elsewhere."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmc_kg.namespaces import RDFS
from cmc_kg.settings import REPO_ROOT

from conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.system  # nginx in front of three `cmc-kg serve`

RECIPE = REPO_ROOT / "deploy" / "nginx" / "cmc-kg.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REPLICAS = 3
COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"


@dataclass
class Recipe:
    base: str               # nginx's URL
    replicas: list          # conftest.LiveServer, one per replica
    build_dir: Path
    access_log: Path


def _nginx_config(tmp: Path, nginx_port: int, replica_ports: list[int]) -> Path:
    """The shipped recipe with this test's ports and folders, inside a main config that keeps pid, logs and
    temporary files in ``tmp``."""
    recipe = RECIPE.read_text(encoding="utf-8")
    shipped = re.findall(r"^\s*server 127\.0\.0\.1:\d+ (.*);$", recipe, re.MULTILINE)
    assert shipped, "deploy/nginx/cmc-kg.conf lists no replica"
    replicas = "".join(f"    server 127.0.0.1:{port} {shipped[0]};\n" for port in replica_ports)
    replacements = [
        (r"(?m)^\s*server 127\.0\.0\.1:\d+ .*;\n", "", 0),
        (r"upstream cmc_kg_replicas \{\n", "upstream cmc_kg_replicas {\n" + replicas, 1),
        (r"listen 80;", f"listen 127.0.0.1:{nginx_port};", 1),
        (r"/var/cache/nginx/cmc-kg", str(tmp / "cache"), 1),
    ]
    for pattern, replacement, count in replacements:
        recipe, found = re.subn(pattern, replacement.replace("\\", r"\\"), recipe, count=count)
        assert found, f"deploy/nginx/cmc-kg.conf no longer has {pattern!r}: update this test with it"
    (tmp / "cmc-kg.conf").write_text(recipe, encoding="utf-8")
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp / "nginx.conf"
    main.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 2;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
{temp}
    log_format upstreams '$msec $request_method $status "$upstream_addr" "$upstream_status" $upstream_cache_status';
    access_log {tmp / "access.log"} upstreams;
    include {tmp / "cmc-kg.conf"};
}}
""", encoding="utf-8")
    return main


@pytest.fixture(scope="module")
def recipe(built, tmp_path_factory):
    """Three replicas over a private copy of the session's build, behind nginx on a free loopback port."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: install Debian's nginx-light (python3 tasks.py test does)", pytrace=False)
    tmp = tmp_path_factory.mktemp("replicas")
    build_dir = tmp / "build"
    shutil.copytree(built[0].build_dir, build_dir)
    replicas = []
    nginx = None
    try:
        for _ in range(REPLICAS):
            replicas.append(start_server(build_dir, "--workers", "1", "--trusted-proxy", "127.0.0.1",
                                         "--reload-interval", "0.5"))
        port = free_port()
        config = _nginx_config(tmp, port, [int(r.url.rsplit(":", 1)[1]) for r in replicas])
        nginx = subprocess.Popen([NGINX, "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _status(base, "/health") != 200:
            if nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start: " + (tmp / "error.log").read_text(errors="replace"))
            time.sleep(0.2)
        yield Recipe(base, replicas, build_dir, tmp / "access.log")
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        for replica in replicas:
            stop_server(replica)


def _status(base: str, path: str) -> int | None:
    try:
        return _request(base, "GET", path)[0]
    except OSError:
        return None


def _request(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             connection: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    own = connection is None
    if own:
        connection = http.client.HTTPConnection(*urllib.parse.urlsplit(base).netloc.split(":"), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        if own:
            connection.close()


def _query(base: str, text: str) -> tuple[int, dict, bytes]:
    return _request(base, "GET", "/sparql?" + urllib.parse.urlencode({"query": text}),
                    headers={"Accept": "text/csv"})


def test_answers_are_cached_and_a_new_build_is_not_served_stale(recipe):
    status, headers, before = _query(recipe.base, COUNT)
    assert status == 200 and headers["etag"]
    again_status, again, again_body = _query(recipe.base, COUNT)
    # Within 1 s nginx answers from its cache; later it revalidates (the replica answers 304): either way the
    # query was not run again.
    assert (again_status, again_body) == (200, before)
    assert again["x-proxy-cache"] in ("HIT", "REVALIDATED"), again
    assert _request(recipe.base, "GET", "/sparql?" + urllib.parse.urlencode({"query": COUNT}),
                    headers={"Accept": "text/csv", "If-None-Match": headers["etag"]})[0] == 304

    # A new build (one more triple), written as the build writes it: atomically, with its report gone.
    old_build = _health(recipe.replicas[0].url)
    dump = recipe.build_dir / "cmc-kg.nq"
    extra = f'<urn:test:replicas> <{RDFS.label}> "a new build" .\n'
    staged = dump.with_suffix(".staged")
    staged.write_bytes(dump.read_bytes() + extra.encode("utf-8"))
    (recipe.build_dir / "build-report.json").unlink(missing_ok=True)
    os.replace(staged, dump)
    deadline = time.monotonic() + 120
    while any(_health(r.url) == old_build for r in recipe.replicas):
        assert time.monotonic() < deadline, "the replicas did not pick up the new build within 120 s"
        time.sleep(0.2)
    switched = time.monotonic()
    # Every replica now serves the new build: nginx must follow within its 1 s freshness (under 2 s in whole
    # seconds); 10 s leaves room for a busy machine, far below the 60 s max-age a plain cache would keep.
    while (answer := _query(recipe.base, COUNT))[2] == before:
        assert time.monotonic() - switched < 10, "nginx still serves the old build's answer"
        time.sleep(0.1)
    assert answer[0] == 200
    assert int(answer[2].split()[-1]) == int(before.split()[-1]) + 1


def _health(url: str) -> str:
    """The build a replica serves."""
    return json.loads(_request(url, "GET", "/health")[2])["build"]


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    what: str


def test_a_replica_killed_under_load_loses_no_request_but_those_in_flight(recipe):
    """SIGKILL one replica while clients send uncached GET and POST queries: nginx sends every later request (and
    in-flight ones it can still resend) to the others. Only a request already being answered could fail."""
    clients, before_kill, after_kill = 6, 3.0, 5.0
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = threading.Event()

    def client():
        host, port = urllib.parse.urlsplit(recipe.base).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while not stop.is_set():
            n = next(counter)
            # Each query is new (its LIMIT), so nginx's cache cannot answer it: every request reaches a replica.
            text = f"SELECT ?c WHERE {{ ?c cmc:isoAlpha3 ?code }} ORDER BY ?code LIMIT {n + 1}"
            began = time.monotonic()
            try:
                if n % 2:
                    status, _, _ = _request(recipe.base, "POST", "/sparql", urllib.parse.urlencode(
                        {"query": text}).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                                    "Accept": "text/csv"}, connection)
                else:
                    status, _, _ = _request(recipe.base, "GET", "/sparql?" + urllib.parse.urlencode(
                        {"query": text}), headers={"Accept": "text/csv"}, connection=connection)
                what = str(status)
            except (OSError, http.client.HTTPException) as failure:
                status, what = None, repr(failure)
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
            with lock:
                outcomes.append(Outcome(began, time.monotonic(), status == 200, what))
        connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(before_kill)
    victim = recipe.replicas[-1]
    victim_port = victim.url.rsplit(":", 1)[1]
    killed_at, killed_at_wall = time.monotonic(), time.time()
    os.kill(victim.process.pid, signal.SIGKILL)
    time.sleep(after_kill)
    stop.set()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads), "a client got no answer within 90 s"

    failed = [o for o in outcomes if not o.ok]
    after = [o for o in outcomes if o.started > killed_at]
    in_flight = [o for o in outcomes if o.started <= killed_at < o.ended]
    log = recipe.access_log.read_text(encoding="utf-8").splitlines()
    print(f"{len(outcomes)} requests, {len(after)} sent after the kill, {len(in_flight)} in flight at the kill, "
          f"{len(failed)} failed: {[o.what for o in failed][:5]}")
    assert len(after) >= 10, "the service stalled after the kill"
    assert not [o for o in failed if o.started > killed_at], "a request sent after the kill failed"
    assert len(failed) <= len(in_flight), "more requests failed than were in flight at the kill"
    # The load reached the victim before the kill, and nginx resent requests that found it dead.
    assert any(f"127.0.0.1:{victim_port}" in line for line in log if float(line.split()[0]) < killed_at_wall)
    assert any(re.search(rf'"127\.0\.0\.1:{victim_port}, 127\.0\.0\.1:\d+', line) for line in log), \
        "no request was resent from the killed replica to another one"
