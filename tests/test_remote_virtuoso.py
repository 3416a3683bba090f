"""`cmc-kg push` and `cmc-kg serve --store` against a real Virtuoso 7 on 127.0.0.1 (a file of its own, so that
pytest-xdist runs it beside the Oxigraph tests of test_remote.py)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from cmc_kg.namespaces import MERGED_GRAPH, PUSH_GRAPH
from cmc_kg.query import example_queries, select
from conftest import free_port, start_server, stop_process, stop_server
from test_remote import (_embedded_answers, _graph_sizes, _push, _pushed_build, _served_answers,
                         check_push_switch)

pytestmark = pytest.mark.system


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
ThreadsPerQuery = 1
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
        stop_process(self.process, grace=60)  # Virtuoso writes a checkpoint as it stops


@pytest.fixture(scope="module")
def virtuoso(tmp_path_factory):
    engine = Virtuoso(tmp_path_factory.mktemp("virtuoso"))
    yield engine
    engine.stop()


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


def test_a_push_switches_readers_at_once_and_serve_store_follows_it(built, tmp_path, virtuoso):
    check_push_switch("virtuoso", built, tmp_path, virtuoso.url + "/sparql",
                      lambda folder: _virtuoso_push(folder, virtuoso),
                      (("default-graph-uri", str(MERGED_GRAPH)), ("named-graph-uri", str(PUSH_GRAPH))))
