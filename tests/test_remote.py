"""`cmc-kg push` and `cmc-kg serve --store` against a real Oxigraph server and a real Virtuoso 7 on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from cmc_kg.namespaces import DCTERMS, GRAPH, MERGED_GRAPH, PUSH_GRAPH
from cmc_kg.query import example_queries, select
from conftest import free_port, start_oxigraph, start_server, stop_server


pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def oxigraph(tmp_path_factory):
    """An Oxigraph server with an empty store; yields its base URL."""
    url, process = start_oxigraph(tmp_path_factory.mktemp("oxigraph"))
    yield url
    process.terminate()
    process.wait(timeout=10)


VIRTUOSO_INI = """\
[Database]
DatabaseFile = {dir}/virtuoso.db
ErrorLogFile = {dir}/virtuoso.log
LockFile = {dir}/virtuoso.lck
TransactionFile = {dir}/virtuoso.trx
xa_persistent_file = {dir}/virtuoso.pxa
TempStorage = TempDatabase
[TempDatabase]
DatabaseFile = {dir}/virtuoso-temp.db
TransactionFile = {dir}/virtuoso-temp.trx
[Parameters]
ServerPort = 127.0.0.1:{sql_port}
DisableUnixSocket = 1
DirsAllowed = {dir}
NumberOfBuffers = 10000
MaxDirtyBuffers = 6000
ThreadsPerQuery = 2
[HTTPServer]
ServerPort = 127.0.0.1:{http_port}
ServerRoot = {dir}
ServerThreads = 8
Charset = UTF-8
[SPARQL]
ResultSetMaxRows = 1000000
MaxQueryExecutionTime = 120
"""


class Virtuoso:
    """Debian's Virtuoso 7 with its own ini and database in a temporary folder, and a user allowed to write."""

    def __init__(self, folder: Path):
        if shutil.which("virtuoso-t") is None:
            pytest.fail("virtuoso-t is missing: install Debian's virtuoso-opensource (python3 tasks.py test does)",
                        pytrace=False)
        self.folder, self.sql_port, http_port = folder, free_port(), free_port()
        (folder / "virtuoso.ini").write_text(VIRTUOSO_INI.format(dir=folder, sql_port=self.sql_port,
                                                                 http_port=http_port))
        self.url = f"http://127.0.0.1:{http_port}"
        self.process = subprocess.Popen(["virtuoso-t", "+foreground", "+configfile", str(folder / "virtuoso.ini")],
                                        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300  # a new database takes about 20 s on an idle machine
        while True:
            try:
                urllib.request.urlopen(self.url + "/sparql?query=ASK%7B%7D", timeout=5)
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"Virtuoso did not answer on {self.url} within 300 s; its log:\n{self.log()}",
                                pytrace=False)
                time.sleep(0.5)
        self.user, self.password = "cmc_push", secrets.token_hex(12)
        self.isql(f"DB.DBA.USER_CREATE('{self.user}', '{self.password}'); GRANT SPARQL_UPDATE TO \"{self.user}\"; "
                  f"DB.DBA.RDF_DEFAULT_USER_PERMS_SET('{self.user}', 7);")

    def isql(self, statements: str) -> None:
        done = subprocess.run(["isql-vt", f"127.0.0.1:{self.sql_port}", "dba", "dba", f"exec={statements}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Error" not in done.stdout + done.stderr, done.stdout + done.stderr

    def log(self) -> str:
        path = self.folder / "virtuoso.log"
        return "".join(path.read_text(errors="replace").splitlines(True)[-40:]) if path.exists() else "(no log)"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def virtuoso(tmp_path_factory):
    engine = Virtuoso(tmp_path_factory.mktemp("virtuoso"))
    yield engine
    engine.stop()


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


def _virtuoso_push(built_dir: Path, virtuoso: Virtuoso, env: dict | None = None) -> subprocess.CompletedProcess:
    return _push(built_dir, virtuoso.url + "/sparql-graph-crud-auth", "--query-endpoint", virtuoso.url + "/sparql",
                 "--update-endpoint", virtuoso.url + "/sparql-auth",
                 env={"CMC_KG_PUSH_USER": virtuoso.user, "CMC_KG_PUSH_PASSWORD": virtuoso.password, **(env or {})})


def test_push_to_virtuoso_needs_its_credentials_and_never_shows_them(built, virtuoso, tmp_path):
    refused = _push(built[0].build_dir, virtuoso.url + "/sparql-graph-crud", "--query-endpoint",
                    virtuoso.url + "/sparql")
    assert refused.returncode != 0 and "403" in refused.stderr
    anonymous = _virtuoso_push(built[0].build_dir, virtuoso, env={"CMC_KG_PUSH_USER": None, "CMC_KG_PUSH_PASSWORD": None,
                                                                  "NETRC": str(tmp_path / "none")})
    assert anonymous.returncode != 0 and "401" in anonymous.stderr and "CMC_KG_PUSH_PASSWORD" in anonymous.stderr
    wrong = _virtuoso_push(built[0].build_dir, virtuoso, env={"CMC_KG_PUSH_PASSWORD": "not-" + virtuoso.password})
    assert wrong.returncode != 0 and "refused the credentials" in wrong.stderr
    assert "not-" + virtuoso.password not in wrong.stdout + wrong.stderr
    assert _pushed_build(virtuoso.url + "/sparql") is None  # nothing was switched
    in_url = _push(built[0].build_dir, virtuoso.url.replace("//", f"//{virtuoso.user}:{virtuoso.password}@")
                   + "/sparql-graph-crud-auth")
    assert in_url.returncode != 0 and "password in a URL is refused" in in_url.stderr
    assert virtuoso.password not in in_url.stderr.replace(virtuoso.url.replace("//", f"//{virtuoso.user}:"), "")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {virtuoso.user} password {virtuoso.password}\n")
    netrc.chmod(0o600)
    pushed = _virtuoso_push(built[0].build_dir, virtuoso, env={"CMC_KG_PUSH_USER": None, "CMC_KG_PUSH_PASSWORD": None,
                                                              "NETRC": str(netrc)})
    assert pushed.returncode == 0, pushed.stderr
    assert virtuoso.password not in pushed.stdout + pushed.stderr
    assert _pushed_build(virtuoso.url + "/sparql") == json.loads(built[0].report_file.read_text())["dump_sha256"]


# Examples Virtuoso 7.2.5 answers otherwise than the embedded store (and Oxigraph server), and why.
VIRTUOSO_DIFFERS = {
    "04-timeline-of-a-state.rq": "`?type rdfs:subClassOf* cmc:TreatyAction` with ?type bound by the join: 1 row, not 16",
    "05-parties-to-one-treaty-not-another.rq": "a FILTER in an OPTIONAL that reads a variable from outside it (?onDate,"
                                               " from VALUES) never holds: 112 rows, not 3",
    "06-sources-of-a-fact.rq": "no escapes in prefixed names (event:ccm\\/entry-into-force): 400",
    "08-conflicting-claims.rq": "FILTERs over variables bound by OPTIONAL and BIND (COALESCE): 3 rows, not 14",
    "10-entry-into-force-threshold.rq": "no escapes in prefixed names: 400",
    "13-cmc-members.rq": "OPTIONAL property paths under GROUP_CONCAT come back empty (kinds, countries)",
    "25-ccm-parties-in-a-region.rq": "the SPARQL compiler fails: 'Internal error: ssg_print_rvr_fixed_val()'",
    "27-parties-per-region.rq": "as 05 (?onDate in an OPTIONAL's FILTER): 0 parties per region",
    "36-ccm-parties-on-a-date.rq": "differed in one run of four, alike in the others (FILTER over OPTIONAL variables "
                                   "and ?onDate from VALUES, as 05; not diagnosed further)",
    "42-whole-list-changes.rq": "no answer within the 60 s time limit (EXISTS in BIND over the records; the "
                                "embedded store answers in about 20 ms)",
}
# Not sent: each run would wait out the whole time limit for the answer Virtuoso was seen not to give.
VIRTUOSO_UNANSWERED = {"42-whole-list-changes.rq"}
assert VIRTUOSO_UNANSWERED <= set(VIRTUOSO_DIFFERS)


def test_serve_over_virtuoso_answers_every_example_like_the_embedded_store(built, store, server, virtuoso):
    started = time.perf_counter()
    pushed = _virtuoso_push(built[0].build_dir, virtuoso)
    assert pushed.returncode == 0, pushed.stderr + virtuoso.log()
    print(f"push to Virtuoso: {time.perf_counter() - started:.1f} s")
    # Virtuoso's own default graph is every graph it holds, so the merged default graph went into a graph of its own
    assert _graph_sizes(virtuoso.url + "/sparql")[str(MERGED_GRAPH)] == int(
        select(store, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }").rows[0]["n"])
    live = start_server(built[0].build_dir, "--store", virtuoso.url + "/sparql", "--query-timeout", "60")
    try:
        health = json.loads(urllib.request.urlopen(live.url + "/health", timeout=30).read())
        embedded = json.loads(urllib.request.urlopen(server.url + "/health", timeout=30).read())
        assert (health["build"], health["triples"]) == (embedded["build"], embedded["triples"])
        differ = {}
        for example in example_queries():
            if example.path.name in VIRTUOSO_UNANSWERED:
                continue
            try:
                remote, embedded_rows = _served_answers(live.url, example), _embedded_answers(server, example)
                if remote != embedded_rows:
                    differ[example.path.name] = (f"{len(remote)} rows, not {len(embedded_rows)}; first extra "
                                                 f"{next((r for r in remote if r not in embedded_rows), None)}, first "
                                                 f"missing {next((r for r in embedded_rows if r not in remote), None)}")
            except urllib.error.HTTPError as refused:
                differ[example.path.name] = f"{refused.code}: {refused.read()[:300]!r}"
        assert set(differ) <= set(VIRTUOSO_DIFFERS), {k: v for k, v in differ.items() if k not in VIRTUOSO_DIFFERS}
    finally:
        stop_server(live)


@pytest.mark.parametrize("engine", ["oxigraph", "virtuoso"])
def test_a_push_switches_readers_at_once_and_serve_store_follows_it(engine, built, tmp_path, request):
    """Readers polling the engine during a push never see the new build id with the old data (on Oxigraph, they see
    the old data or the new, never a mix); the server over it then answers from the new build, with a new build
    id and ETag, not from its cache."""
    if engine == "oxigraph":
        base = request.getfixturevalue("oxigraph")
        query_url, do_push = base + "/query", lambda folder: _push(folder, base + "/store")
        dataset = ()
    else:
        virtuoso = request.getfixturevalue("virtuoso")
        query_url, do_push = virtuoso.url + "/sparql", lambda folder: _virtuoso_push(folder, virtuoso)
        dataset = (("default-graph-uri", str(MERGED_GRAPH)), ("named-graph-uri", str(PUSH_GRAPH)))
    assert do_push(built[0].build_dir).returncode == 0
    # Virtuoso takes seconds for GRAPH ?g over the build's 60 named graphs (/health counts the quads that way)
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
                time.sleep(0.02)  # leave the cores to the push
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
