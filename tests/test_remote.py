"""`cmc-kg push` and `cmc-kg serve --store` against a real Oxigraph server on 127.0.0.1 (Virtuoso: test_remote_virtuoso.py).

The helpers here serve both files."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from cmc_kg.namespaces import DCTERMS, GRAPH, PUSH_GRAPH
from cmc_kg.query import example_queries, select
from conftest import start_oxigraph, start_server, stop_process, stop_server


pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def oxigraph():
    """An Oxigraph server with an empty store in memory; yields its base URL. The protocol and the transactions are
    those of a store on disk, where each push costs about 7x the CPU (RocksDB: 16 s against 2.3 s for three pushes)."""
    url, process = start_oxigraph(None)
    yield url
    stop_process(process)


def _remote_select(query_url: str, query: str, dataset: tuple = ()) -> list[dict]:
    request = urllib.request.Request(query_url, urllib.parse.urlencode([("query", query), *dataset]).encode(),
                                     {"Accept": "application/sparql-results+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["results"]["bindings"]


def _push(build_dir: Path, endpoint: str, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmc_kg.cli", "push", "--endpoint", endpoint,
                           "--build-dir", str(build_dir), *flags], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})


def _graph_sizes(query_url: str) -> dict[str, int]:
    rows = _remote_select(query_url, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g")
    return {r["g"]["value"]: int(r["n"]["value"]) for r in rows}


def _pushed_build(query_url: str) -> str | None:
    rows = _remote_select(query_url, f"SELECT ?b WHERE {{ GRAPH <{PUSH_GRAPH}> {{ <{PUSH_GRAPH}> "
                                     f"<{DCTERMS.identifier}> ?b }} }}")
    return rows[0]["b"]["value"] if len(rows) == 1 else None


def _local_sizes(store) -> dict[str, int]:
    return {r["g"]: int(r["n"]) for r in select(
        store, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g").rows}


def _second_build(built, folder: Path) -> Path:
    """A copy of the build with one more fact in a graph of its own: a newer build to push."""
    (folder / "cmc-kg.nq").write_bytes(Path(built[0].dump_file).read_bytes() + (
        f'<{GRAPH}fresh-fact> <{DCTERMS.title}> "a fact only the second build has" <{GRAPH}fresh-fact> .\n'
    ).encode())
    return folder


def test_push_uploads_every_graph_and_replaces_the_previous_upload(built, store, oxigraph):
    stale, foreign = str(GRAPH["withdrawn-source"]), "http://example.org/someone-elses-graph"
    for graph in (stale, foreign):
        urllib.request.urlopen(urllib.request.Request(
            f"{oxigraph}/store?{urllib.parse.urlencode({'graph': graph})}", b"<urn:a> <urn:b> <urn:c> .\n",
            {"Content-Type": "application/n-triples"}, method="PUT"), timeout=10)
    local = _local_sizes(store)
    for _ in range(2):
        result = _push(built[0].build_dir, oxigraph + "/store")
        assert result.returncode == 0, result.stderr
        # the build's graphs, the record of the push (its build id and one line per graph), the foreign graph kept
        assert _graph_sizes(oxigraph + "/query") == {**local, str(PUSH_GRAPH): len(local) + 1, foreign: 1}
    merged = select(store, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }").rows[0]["n"]
    assert _remote_select(oxigraph + "/query", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")[0]["n"]["value"] == merged
    assert _pushed_build(oxigraph + "/query") == json.loads(built[0].report_file.read_text())["dump_sha256"]


def _normalised(bindings: list[dict]) -> list[tuple]:
    """Rows to compare across engines, as a sorted list: GROUP_CONCAT lists in any order, and numbers by value
    (Virtuoso writes a decimal 0.5 as 0.5 where Oxigraph may write 0.50, and types COUNT as xsd:int)."""
    def value(term: dict) -> str:
        text = term["value"]
        if term.get("datatype", "").startswith("http://www.w3.org/2001/XMLSchema#") and \
                re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", text):
            return repr(float(text))
        return "; ".join(sorted(text.split("; ")))
    return sorted(tuple(sorted((k, value(v)) for k, v in row.items())) for row in bindings)


def _served_answers(url: str, example) -> list[tuple]:
    request = urllib.request.Request(url + "/sparql", urllib.parse.urlencode({"query": example.text}).encode(),
                                     {"Accept": "application/sparql-results+json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return _normalised(json.loads(response.read())["results"]["bindings"])


def _embedded_answers(server, example) -> list[tuple]:
    return _served_answers(server.url, example)


def test_serve_over_oxigraph_answers_like_the_embedded_store(built, server, oxigraph):
    assert _push(built[0].build_dir, oxigraph + "/store").returncode == 0
    live = start_server(built[0].build_dir, "--store", oxigraph + "/query")
    try:
        for example in example_queries():
            assert _served_answers(live.url, example) == _embedded_answers(server, example), example.path.name
    finally:
        stop_server(live)


def test_a_push_switches_readers_at_once_and_serve_store_follows_it(built, tmp_path, oxigraph):
    check_push_switch("oxigraph", built, tmp_path, oxigraph + "/query", lambda folder: _push(folder, oxigraph + "/store"))


def check_push_switch(engine: str, built, tmp_path: Path, query_url: str,
                      do_push: Callable[[Path], subprocess.CompletedProcess], dataset: tuple = ()) -> None:
    """Readers polling the engine during a push never see the new build id with the old data (on Oxigraph, they see
    the old data or the new, never a mix); the server over it then answers from the new build, with a new build
    id and ETag, not from its cache. ``dataset``: the protocol's dataset parameters the engine's queries need."""
    assert do_push(built[0].build_dir).returncode == 0
    live = start_server(built[0].build_dir, "--store", query_url, "--reload-interval", "0.5", "--query-timeout", "60")
    try:
        probe = {"query": f"ASK {{ ?s <{DCTERMS.title}> \"a fact only the second build has\" }}"}
        first = urllib.request.urlopen(f"{live.url}/sparql?{urllib.parse.urlencode(probe)}", timeout=30)
        old_etag, old_body = first.headers["ETag"], first.read()
        assert b"false" in old_body
        old_build = json.loads(urllib.request.urlopen(live.url + "/health", timeout=30).read())["build"]

        # one query reads the default graph's size, the new build's own graph and the build id push recorded
        fresh = f"{GRAPH}fresh-fact"
        consistency = (f"SELECT ?n ?f ?b WHERE {{ {{ SELECT (COUNT(*) AS ?n) WHERE {{ ?s ?p ?o }} }} "
                       f"{{ SELECT (COUNT(*) AS ?f) WHERE {{ GRAPH <{fresh}> {{ ?s ?p ?o }} }} }} "
                       f"OPTIONAL {{ GRAPH <{PUSH_GRAPH}> {{ <{PUSH_GRAPH}> <{DCTERMS.identifier}> ?b }} }} }}")
        dataset += (("named-graph-uri", fresh),) if dataset else ()
        seen, stop = set(), threading.Event()

        def read() -> None:
            while not stop.is_set():
                for row in _remote_select(query_url, consistency, dataset):  # the engine itself: no cache between
                    seen.add((int(row["n"]["value"]), int(row["f"]["value"]), row["b"]["value"]))
                time.sleep(0.1)  # leave the cores to the push
        reader = threading.Thread(target=read)
        reader.start()
        try:
            second = _second_build(built, tmp_path)
            assert do_push(second).returncode == 0
        finally:
            stop.set()
            reader.join(timeout=120)
        new_build = json.loads(urllib.request.urlopen(live.url + "/health", timeout=30).read())["build"]
        deadline = time.monotonic() + 60
        while new_build == old_build and time.monotonic() < deadline:
            time.sleep(0.2)
            new_build = json.loads(urllib.request.urlopen(live.url + "/health", timeout=30).read())["build"]
        assert new_build != old_build
        answer = urllib.request.urlopen(urllib.request.Request(
            f"{live.url}/sparql?{urllib.parse.urlencode(probe)}", headers={"If-None-Match": old_etag}), timeout=30)
        assert answer.status == 200 and b"true" in answer.read() and answer.headers["ETag"] != old_etag
    finally:
        stop_server(live)
        assert do_push(built[0].build_dir).returncode == 0  # the session's build again, for the other tests
    print(f"{engine}: the readers saw {sorted(seen)}")
    old_size = min(n for n, _, _ in seen)
    # the new build id is never read with the old data, so serve --store never keys old answers with it
    assert all(n == old_size + 1 and f == 1 for n, f, b in seen if b == new_build), seen
    if engine == "oxigraph":  # one transaction, queries on snapshots: the data is old or new, never a mix
        assert {(n, f) for n, f, _ in seen} <= {(old_size, 0), (old_size + 1, 1)}, seen


class _BasicGate:
    """A loopback reverse proxy that lets through only requests with the right HTTP Basic credentials (as nginx's
    auth_basic in front of an engine would), forwarding them to a real Oxigraph server; it records what it saw."""

    def __init__(self, target: str, user: str, password: str):
        import base64
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[tuple[str, str, bool]] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                authorised = self.headers.get("Authorization") == expected
                gate.seen.append((self.command, self.path, authorised))
                if not authorised:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="cmc-kg test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = urllib.request.Request(target + self.path, body if self.command != "GET" else None,
                                                 {k: v for k, v in self.headers.items()
                                                  if k.lower() in ("content-type", "accept")}, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        status, headers, data = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as failure:
                    status, headers, data = failure.code, failure.headers, failure.read()
                self.send_response(status)
                self.send_header("Content-Type", headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_push_and_serve_answer_a_basic_challenge_and_never_send_credentials_unasked(built, oxigraph, tmp_path):
    gate = _BasicGate(oxigraph, "pusher", secret := secrets.token_hex(8))
    try:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login pusher password {secret}\n")
        netrc.chmod(0o600)
        pushed = _push(built[0].build_dir, gate.url + "/store", env={"NETRC": str(netrc), "CMC_KG_PUSH_USER": None,
                                                                    "CMC_KG_PUSH_PASSWORD": None})
        assert pushed.returncode == 0, pushed.stderr
        assert secret not in pushed.stdout + pushed.stderr
        assert gate.seen[0][0] == "HEAD" and not gate.seen[0][2]  # the challenge is learned before any is sent
        writes = [(method, authorised) for method, _, authorised in gate.seen if method in ("PUT", "POST", "DELETE")]
        assert writes and all(authorised for _, authorised in writes)  # every write carried the credentials
        assert _pushed_build(oxigraph + "/query") == json.loads(built[0].report_file.read_text())["dump_sha256"]
        gate.seen.clear()
        refused = _push(built[0].build_dir, gate.url + "/store", env={"NETRC": str(tmp_path / "none"),
                                                                     "CMC_KG_PUSH_USER": None, "CMC_KG_PUSH_PASSWORD": None})
        assert refused.returncode != 0 and "401" in refused.stderr and "CMC_KG_PUSH_USER" in refused.stderr
        gate.seen.clear()
        # serve --store reads through the same gate with the same credentials, sent only once asked for
        live = start_server(built[0].build_dir, "--store", gate.url + "/query",
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("CMC_KG_PUSH_")},
                                 "NETRC": str(netrc)})
        try:
            with urllib.request.urlopen(live.url + "/sparql?query=" + urllib.parse.quote(
                    "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"), timeout=120) as answer:
                assert answer.status == 200 and b"results" in answer.read()
        finally:
            stop_server(live)
        assert gate.seen and not gate.seen[0][2] and gate.seen[-1][2]
        assert all(path.startswith("/query") for _, path, _ in gate.seen)
    finally:
        gate.close()
