"""Hostile input against a real `cmc-kg serve`: random and mutated requests, a catalogue of queries that must be
refused before evaluation, and costly queries that must be stopped at the time limit while others are answered.

Everything listens on 127.0.0.1. The servers here have a short time limit (2 s) and a memory cap per query
worker, so that each property can be checked in seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cmc_kg.contract import QueryPolicy, QueryRequest, ServiceError
from cmc_kg.engine import Engine
from cmc_kg.namespaces import SOURCES_GRAPH
from cmc_kg.query import example_queries
from cmc_kg.safety import QueryError, QueryRefused, check_query

from conftest import free_port, start_server, stop_server

TIMEOUT = 2.0
MARGIN = 5.0          # HTTP, queueing and a worker's restart on top of the time limit, on a busy 2-core machine
WORKER_MEMORY = 1024  # MiB per query worker
CHEAP = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import soak  # noqa: E402  (process-tree memory helpers)


class Listener:
    """A TCP listener on a free loopback port that records (and closes) every connection made to it."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(50)
        self.socket.settimeout(0.1)
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sparql"

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
                self.connections += 1
                connection.close()
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.socket.close()


def request(base: str, method: str = "GET", path: str = "/sparql", params: dict | list | None = None,
            body: bytes | None = None, headers: dict | None = None, timeout: float = 30.0):
    """One raw HTTP exchange: (status, headers, body, seconds)."""
    parts = urllib.parse.urlsplit(base)
    target = path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data, time.monotonic() - started
    finally:
        connection.close()


def query(base: str, text: str, how: str = "form", extra: dict | None = None, accept: str | None = None):
    headers = {"Accept": accept} if accept else {}
    if how == "get":
        return request(base, "GET", params={"query": text, **(extra or {})}, headers=headers)
    if how == "direct":
        return request(base, "POST", params=extra, body=text.encode("utf-8"),
                       headers={**headers, "Content-Type": "application/sparql-query"})
    return request(base, "POST", body=urllib.parse.urlencode({"query": text, **(extra or {})}, doseq=True).encode(),
                   headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture(scope="module")
def hostile(built):
    live = start_server(built[0].build_dir, "--query-timeout", str(TIMEOUT), "--workers", "2", "--cache-entries", "0",
                        "--worker-memory", str(WORKER_MEMORY), "--reload-interval", "0")
    yield live
    stop_server(live)


def _wait_for_workers(pid: int, count: int = 2, seconds: float = 60.0) -> None:
    """Until the server has ``count`` workers and all are idle: a worker that replaces a stopped one loads the
    graph first (seconds, on a busy machine), and a cheap query sent meanwhile would wait for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(soak.worker_pids(pid)) < count:
        time.sleep(0.1)
    used = -1.0
    while time.monotonic() < deadline:
        before, used = used, sum(soak.cpu_seconds(worker) for worker in soak.worker_pids(pid))
        if used - before < 0.02:  # less than 10% of a core over the last 0.25 s
            return
        time.sleep(0.25)


# ------------------------------------------------------------------------ random and mutated requests

def _allowed(status: int) -> bool:
    # Every answer is a success, a redirect, a client error or 503 (stopped at the limit): never 500 or 502.
    return status < 500 or status == 503


KEYWORDS = ["SERVICE", "SERVICE SILENT", "FROM", "FROM NAMED", "INSERT DATA", "DELETE WHERE", "LOAD", "DROP ALL",
            "GRAPH ?g", "FILTER(", "BIND(", "VALUES ?x {", "OPTIONAL {", "UNION", "MINUS {", "{", "}", "(", ")", "<",
            ">", "'", '"', "'''", "#", "\\", "\r", "\n", "<file:///etc/passwd>", "<http://169.254.169.254/>",
            "?s ?p ?o .", "*", "+", "/", "|", "^", "!", "REGEX(", "?x", "LIMIT 1", "ORDER BY", "GROUP BY", "\x00",
            "\u00e9", "\ud7ff", "%", "e:a\\#b", "1<'a>'", "COUNT(*)", "DESCRIBE", "CONSTRUCT", "ASK", "SELECT *"]
EXAMPLES = [q.text for q in example_queries()]


@st.composite
def mutated_queries(draw):
    text = draw(st.sampled_from(EXAMPLES + [CHEAP]))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        if operation == "insert":
            piece = draw(st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=12)))
            text = text[:position] + piece + text[position:]
        elif operation == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 40)):]
        elif operation == "duplicate":
            end = min(len(text), position + draw(st.integers(1, 60)))
            text = text[:end] + text[position:end] + text[end:]
        else:
            text = text[:position] + draw(st.sampled_from(KEYWORDS)) + text[position + draw(st.integers(1, 10)):]
    return text


ACCEPTS = st.one_of(st.none(), st.sampled_from([
    "application/sparql-results+json", "text/csv", "text/turtle", "application/ld+json", "image/png", "*/*",
    "text/html", "application/sparql-results+xml;q=0.1, */*;q=0.0", ";;;", "text/*;q=abc"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
PARAM_VALUES = st.one_of(st.text(max_size=40), st.sampled_from([
    "file:///etc/passwd", "http://127.0.0.1:1/", str(SOURCES_GRAPH), "json", "xml", "csv", "",
    "not an iri", "<x>", "\x00"]))
PARAM_NAMES = st.sampled_from(["format", "default-graph-uri", "named-graph-uri", "update", "query", "output",
                               "timeout", "using-graph-uri", "x"])


@pytest.mark.system
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(text=st.one_of(mutated_queries(), st.text(max_size=300)), how=st.sampled_from(["get", "form", "direct"]),
       accept=ACCEPTS, extra=st.dictionaries(PARAM_NAMES, PARAM_VALUES, max_size=3))
def test_random_and_mutated_queries_never_fail_the_server(hostile, text, how, accept, extra):
    status, _, body, seconds = query(hostile.url, text, how, extra, accept)
    assert _allowed(status), (status, body[:300], text)
    assert seconds < TIMEOUT + MARGIN, (seconds, text)
    if status == 503:
        assert b"limit" in body or b"worker" in body


HEADER_NAME = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-ABCXYZ0123456789"), min_size=1, max_size=20)
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60)


@pytest.mark.system
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"]),
       headers=st.dictionaries(st.one_of(HEADER_NAME, st.sampled_from(
           ["Accept", "Content-Type", "If-None-Match", "Origin", "Accept-Encoding", "Range", "Content-Length"])),
           HEADER_VALUE, max_size=5),
       body=st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([b"query=ASK%7B%7D", b"update=DROP%20ALL"])))
def test_random_headers_methods_and_bodies(hostile, method, headers, body):
    if "Content-Length" in headers:
        headers["Content-Length"] = str(len(body or b""))  # a false length would only make the client wait
    try:
        status, _, answer, seconds = request(hostile.url, method, params={"query": CHEAP}, body=body,
                                             headers=headers, timeout=TIMEOUT + MARGIN + 5)
    except (ConnectionError, http.client.HTTPException):
        return  # the server may close a connection whose request it cannot read; it must live on
    assert _allowed(status), (status, answer[:300], method, headers)
    assert seconds < TIMEOUT + MARGIN
    assert request(hostile.url, params={"query": "ASK {}"})[0] == 200


PAGE_PREFIXES = st.sampled_from(["/id/", "/graph/", "/ontology/", "/ontology/0.1.0/", "/dumps/", "/sparql/", "/query/",
                                 "/.well-known/", "/static/", "/", "/id/country/", "/id/../", "/dumps/..%2F"])


@pytest.mark.system
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(prefix=PAGE_PREFIXES, rest=st.one_of(st.text(max_size=60), st.sampled_from([
    "..%2F..%2F..%2Fetc%2Fpasswd", "%00", "%ff%fe", "FRA", "country/FRA", "cmc-kg.nq", "..", "....//", "%2e%2e/",
    "void", "a" * 3000])), accept=ACCEPTS, query_string=st.one_of(st.none(), st.text(max_size=30)))
def test_random_entity_paths(hostile, prefix, rest, accept, query_string):
    path = prefix + urllib.parse.quote(rest, safe="/%")
    headers = {"Accept": accept} if accept else {}
    status, _, body, seconds = request(hostile.url, "GET", path + ("?q=" + urllib.parse.quote(query_string)
                                                                   if query_string is not None else ""),
                                       headers=headers, timeout=20)
    assert _allowed(status), (status, path, body[:300])
    assert seconds < TIMEOUT + MARGIN
    assert b"root:x:0:0" not in body


# ------------------------------------------------------------------------ the query check against Oxigraph itself

_FUZZ_STORE = ox.Store()
_FUZZ_STORE.add(ox.Quad(ox.NamedNode("http://e/a"), ox.NamedNode("http://e/b"), ox.Literal("x")))
_SEPARATORS = st.sampled_from([" ", "", "", "\n", "\r", " #c\n", "#x\r", "\t"])
_OPERANDS = st.sampled_from(["?x", "1", "'a>'", "'a'", "<http://e/x#y>", "e:a\\#b", "'''a'''", '"a"', "<'a>", "'a'@en",
                             "'1'^^e:t", "true", "<a'b>", "e:f(?x)", "STR(?x)", '"a>"', "'>'", "'#'",
                             "<http://e/\\u0041>", "e:a\\'b", "?x<'", "'<'", "1.5", '"""a"""'])
_OPERATORS = st.sampled_from(["<", ">", "=", "!=", "<=", ">=", "&&", "||", "+", " < ", " IN ", ","])
_EXPRESSIONS = st.recursive(_OPERANDS, lambda e: st.one_of(
    st.tuples(e, _SEPARATORS, _OPERATORS, _SEPARATORS, e).map("".join),
    st.tuples(st.just("("), e, st.just(")")).map("".join),
    st.tuples(st.sampled_from(["STR(", "e:f(", "<http://e/f>(", "COALESCE(", "IF("]), e, st.just(")")).map("".join)),
    max_leaves=6)
_PIECES = st.one_of(
    st.tuples(st.just("FILTER("), _EXPRESSIONS, st.just(")")).map("".join),
    st.tuples(st.just("FILTER "), st.sampled_from(["STR(", "e:f(", "<http://e/f>(", "regex("]), _EXPRESSIONS,
              st.just(")")).map("".join),
    st.tuples(st.just("BIND("), _EXPRESSIONS, st.just(" AS ?v)")).map("".join),
    st.sampled_from(["?s ?p ?o .", "?s e:a\\#b ?o .", "?s <http://e/p#q> ?o .", "?s ?p <a'b> .", "VALUES ?x { 1 'a>' }",
                     "?s ?p ('a' <http://e/x#y>) .", "OPTIONAL { ?s ?p ?o }"]),
    st.sampled_from(["'", "''", "'''", '"', '"""', "#", "<", "\\", ")", "(", "}", "{"]))


@pytest.fixture(scope="module")
def listener():
    live = Listener()
    yield live
    live.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(head=st.lists(st.tuples(_PIECES, _SEPARATORS).map("".join), min_size=1, max_size=5).map("".join),
       tail=st.lists(st.one_of(_PIECES, _SEPARATORS), max_size=6).map("".join), gap=_SEPARATORS)
def test_no_query_that_passes_the_check_reaches_a_service(listener, head, tail, gap):
    """Queries built to hide a SERVICE from the check (strings, comments, '<' read as an IRI or an operator,
    escapes): whatever passes the check is run by Oxigraph in this process, and the listener must see nothing."""
    text = (f"PREFIX e: <http://e/> SELECT * {{ OPTIONAL {{ {head}{gap}}} "
            f"SERVICE <http://127.0.0.1:{listener.port}/> {{ ?s ?p ?o }} {tail} }}")
    try:
        check_query(text)
    except (QueryRefused, QueryError):
        return
    before = listener.connections
    try:
        result = _FUZZ_STORE.query(text)
        if isinstance(result, ox.QuerySolutions):
            list(result)
    except SyntaxError:
        return
    except OSError as error:
        pytest.fail(f"the check let a SERVICE through ({error}): {text!r}")
    time.sleep(0.005)
    assert listener.connections == before, text


@pytest.mark.system
@pytest.mark.parametrize("network", [False, True])
def test_workers_without_network_cannot_connect_even_if_the_check_is_bypassed(built, listener, network):
    """Defence in depth: with no SERVICE allowed, a worker's sockets are denied by seccomp. The engine's check is
    told to let the SERVICE through (as a check that missed it would); with network allowed (the control) the
    listener does see the call."""
    target = f"http://127.0.0.1:{listener.port}/"
    engine = Engine(built[0].dump_file, workers=1, timeout=5, network=network,
                    policy=QueryPolicy(allowed_services=frozenset({target})))
    try:
        before = listener.connections
        with pytest.raises(ServiceError) as failure:
            engine.run(QueryRequest(f"SELECT * WHERE {{ SERVICE <{target}> {{ ?s ?p ?o }} }}"))
        time.sleep(0.3)
        if network:
            assert listener.connections > before
        else:
            assert listener.connections == before and "Permission denied" in str(failure.value)
    finally:
        engine.close()


# ------------------------------------------------------------------------ the catalogue, refused before evaluation

def _catalogue(listener_url: str, canary: Path) -> list[tuple[str, dict]]:
    """(description, request) for every hostile query; each must be answered 403 without evaluation."""
    file_iri = canary.as_uri()
    service_targets = [listener_url, "http://127.0.0.1:80/sparql", "http://169.254.169.254/latest/meta-data/",
                       file_iri, "http://unlisted.example.org/sparql"]
    queries = []
    for target in service_targets:
        queries += [(f"SERVICE <{target}>", f"SELECT * WHERE {{ SERVICE <{target}> {{ ?s ?p ?o }} }}"),
                    (f"SERVICE SILENT <{target}>", f"SELECT * WHERE {{ SERVICE SILENT <{target}> {{ ?s ?p ?o }} }}")]
    queries += [
        ("service in lower case", f"select * where {{ service <{listener_url}> {{ ?s ?p ?o }} }}"),
        ("SERVICE after a comment ended by CR", f"SELECT * WHERE {{ # x\rSERVICE <{listener_url}> {{ ?s ?p ?o }} }}"),
        ("SERVICE after an escaped local name", f"PREFIX e: <http://e/> SELECT * WHERE {{ ?s e:a\\#b ?o "
                                                f"SERVICE <{listener_url}> {{ ?s ?p ?o }} }}"),
        ("SERVICE hidden by '<' read as an IRI", f"SELECT * WHERE {{ FILTER(1<'a>') SERVICE <{listener_url}> "
                                                 "{ ?s ?p ?o } FILTER('b') }"),
        ("SERVICE with a variable", "SELECT * WHERE { BIND(<http://127.0.0.1/> AS ?e) SERVICE ?e { ?s ?p ?o } }"),
        ("SERVICE in a subquery", f"SELECT * WHERE {{ {{ SELECT * WHERE {{ SERVICE <{listener_url}> {{ ?s ?p ?o }} "
                                  "} } } }"),
    ]
    for target in (listener_url, file_iri, "http://169.254.169.254/latest/meta-data/", "urn:nowhere"):
        queries += [(f"FROM <{target}>", f"SELECT * FROM <{target}> WHERE {{ ?s ?p ?o }}"),
                    (f"FROM NAMED <{target}>", f"SELECT * FROM NAMED <{target}> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}")]
    queries += [("FROM a relative IRI", "SELECT * FROM <x.ttl> WHERE { ?s ?p ?o }"),
                ("ASK FROM file:", f"ASK FROM <{file_iri}> {{ ?s ?p ?o }}"),
                ("CONSTRUCT FROM file:", f"CONSTRUCT {{ ?s ?p ?o }} FROM <{file_iri}> WHERE {{ ?s ?p ?o }}")]
    updates = [("LOAD file:", f"LOAD <{file_iri}>"), ("LOAD http:", f"LOAD <{listener_url}>"),
               ("LOAD INTO", f"LOAD SILENT <{listener_url}> INTO GRAPH <urn:g>"),
               ("INSERT DATA", "INSERT DATA { <urn:a> <urn:b> <urn:c> }"),
               ("DELETE WHERE", "DELETE WHERE { ?s ?p ?o }"), ("DROP", "DROP ALL"), ("CLEAR", "CLEAR DEFAULT"),
               ("CREATE", "CREATE GRAPH <urn:g>"),
               ("INSERT after a prologue", "PREFIX e: <http://e/> BASE <http://e/> INSERT { ?s ?p ?o } WHERE { ?s ?p ?o }")]
    catalogue = []
    for name, text in queries:
        catalogue += [(f"{name} by GET", {"method": "GET", "params": {"query": text}}),
                      (f"{name} by POST", {"method": "POST", "body": urllib.parse.urlencode({"query": text}).encode(),
                                           "headers": {"Content-Type": "application/x-www-form-urlencoded"}})]
    for name, text in updates:
        catalogue += [
            (f"{name} as query= by GET", {"method": "GET", "params": {"query": text}}),
            (f"{name} as query= by POST", {"method": "POST", "body": urllib.parse.urlencode({"query": text}).encode(),
                                           "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
            (f"{name} as update= by GET", {"method": "GET", "params": {"update": text}}),
            (f"{name} as update= by POST", {"method": "POST", "body": urllib.parse.urlencode({"update": text}).encode(),
                                            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
            (f"{name} as sparql-update", {"method": "POST", "body": text.encode(),
                                          "headers": {"Content-Type": "application/sparql-update"}}),
            (f"{name} as sparql-query", {"method": "POST", "body": text.encode(),
                                         "headers": {"Content-Type": "application/sparql-query"}}),
        ]
    for parameter in ("default-graph-uri", "named-graph-uri"):
        for target in (file_iri, listener_url, "not an IRI"):
            catalogue.append((f"{parameter}={target}", {"method": "GET", "params": {"query": "ASK { ?s ?p ?o }",
                                                                                    parameter: target}}))
    return catalogue


@pytest.fixture(scope="module")
def traced(built, tmp_path_factory):
    """A server run under strace (open, openat, connect of the server and its workers), over a private build copy."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (Debian package strace; tasks.py installs it)")
    folder = tmp_path_factory.mktemp("traced")
    build_dir = folder / "build"
    shutil.copytree(built[0].build_dir, build_dir)
    log = folder / "strace.log"
    port = free_port()
    process = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,connect", "-o", str(log), sys.executable, "-m",
         "cmc_kg.cli", "serve", "--port", str(port), "--build-dir", str(build_dir), "--query-timeout", str(TIMEOUT),
         "--cache-entries", "0", "--reload-interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if request(url, path="/health", timeout=2)[0] == 200:
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail("the traced server did not start")
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("the traced server did not answer within 90 s")
    try:
        yield url, log, build_dir
    finally:
        # Stop the server, not strace: strace then ends with it.
        for pid in [p for p in soak.process_tree(process.pid) if p != process.pid][:1]:
            os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _opened_paths(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines for m in [re.search(r'open(?:at2?)?\(.*?"((?:[^"\\]|\\.)*)"', line)] if m]


@pytest.mark.system
def test_catalogue_is_refused_without_a_connection_or_a_file_read(traced, tmp_path):
    url, log, build_dir = traced
    canary = tmp_path / "canary-secret.ttl"
    canary.write_text("<urn:canary> <urn:secret> 'do not read me' .\n", encoding="utf-8")
    listener = Listener()
    # Warm up: the first requests import modules lazily; that is not a file the query asked for.
    for _ in range(2):
        assert query(url, "SELECT * WHERE { SERVICE <http://x.example/> { ?s ?p ?o } }")[0] == 403
        assert query(url, CHEAP)[0] == 200
    time.sleep(0.5)
    offset = log.stat().st_size
    try:
        catalogue = _catalogue(listener.url, canary)
        assert len(catalogue) > 80
        for name, spec in catalogue:
            status, _, body, seconds = request(url, spec["method"], params=spec.get("params"), body=spec.get("body"),
                                               headers=spec.get("headers"))
            assert status == 403, (name, status, body[:200])
            assert re.search(rb"allowlist|read-only|not a graph of this dataset|ambiguous", body), (name, body)
            assert b"do not read me" not in body and seconds < TIMEOUT, name  # refused, never evaluated
        time.sleep(1.0)
        assert listener.connections == 0
    finally:
        listener.close()
    assert query(url, CHEAP)[0] == 200
    time.sleep(0.5)
    trace = log.read_text(encoding="utf-8", errors="replace")
    during = trace[offset:].splitlines()
    assert f'"{build_dir / "cmc-kg.nq"}"' in trace[:offset]  # the trace is live: it saw the build being opened
    # No connection to anything, and no file opened but the build's while the catalogue was sent.
    assert [line for line in during if "connect(" in line and "AF_UNIX" not in line] == []
    allowed = (str(build_dir), "/proc/self/", "/dev/", sys.prefix, sys.base_prefix,
               str(Path(__file__).resolve().parent.parent))
    outside = [p for p in _opened_paths(during) if not p.startswith(allowed)
               and not re.fullmatch(r"/proc/\d+/stat", p)]  # the engine looking at its own workers' state
    assert outside == [], outside
    assert str(canary) not in trace and canary.name not in trace


# ------------------------------------------------------------------------ costly queries

_VALUES = " ".join(str(i) for i in range(50_000))
COSTLY = {
    "cross product": "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }",
    "sorted cross product (memory)": "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f } ORDER BY ?c ?f",
    "string aggregate over a cross product": "SELECT (STRLEN(GROUP_CONCAT(STR(?c))) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f }",
    "deep property path": "SELECT (COUNT(*) AS ?n) WHERE { ?a ((!<urn:x>)*/(^!<urn:x>)*)* ?b }",
    "chained property paths": "SELECT (COUNT(*) AS ?n) WHERE { ?a (<urn:x>|!<urn:x>)*/(<urn:x>|!<urn:x>)*/"
                              "(<urn:x>|!<urn:x>)*/(<urn:x>|!<urn:x>)* ?b }",
    "huge VALUES block": f"SELECT (COUNT(*) AS ?n) WHERE {{ VALUES ?x {{ {_VALUES} }} VALUES ?y {{ {_VALUES} }} }}",
    "catastrophic regular expression": "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f "
                                       "FILTER REGEX(CONCAT(STR(?c), STR(?f)), '^(a+)+$') }",
}


@pytest.fixture(scope="module")
def memory_peak(hostile):
    sampler = soak.MemorySampler(hostile.process.pid, interval=0.05)
    with sampler:
        yield sampler
    peak = sampler.peak_mb()
    hwm = {k: round(v / 1024) for k, v in sampler.hwm_kb.items()}
    print(f"\npeak RSS of server + workers under costly queries: {peak:.0f} MiB; VmHWM per process (MiB): {hwm}")
    # Bounded: each worker stays under its cap, the server holds no query result.
    assert peak < 2 * WORKER_MEMORY + 400


@pytest.mark.system
@pytest.mark.parametrize("name", list(COSTLY))
def test_costly_query_is_stopped_while_a_cheap_one_is_answered(hostile, memory_peak, name):
    _wait_for_workers(hostile.process.pid)
    usual = min(query(hostile.url, CHEAP)[3] for _ in range(3))
    outcome = {}

    def costly():
        outcome["costly"] = query(hostile.url, COSTLY[name])

    thread = threading.Thread(target=costly)
    thread.start()
    time.sleep(0.3)
    status, _, body, seconds = query(hostile.url, CHEAP)
    thread.join(timeout=30)
    assert status == 200 and [b["code"]["value"] for b in json.loads(body)["results"]["bindings"]] == ["FRA", "NOR"]
    assert seconds < TIMEOUT, (seconds, usual)  # answered without waiting for the costly query to be stopped
    costly_status, _, costly_body, costly_seconds = outcome["costly"]
    assert costly_status == 503, (costly_status, costly_body[:300])
    assert costly_seconds < TIMEOUT + MARGIN
    memory_peak.sample()
