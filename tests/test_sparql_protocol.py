"""The SPARQL 1.1 Protocol at /sparql as clients use it: the app in process over the session's build, and a real
`cmc-kg serve` on 127.0.0.1 for the limits (rows, request size, time)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import socket
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from rdflib import Dataset, Graph, URIRef

from cmc_kg.namespaces import GRAPH, PREFIXES, SD
from cmc_kg.query import default_graph_size, select

from conftest import exchange, start_server, stop_server

CODES = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"
CONSTRUCT = "CONSTRUCT { ?c rdfs:label ?l } WHERE { ?c cmc:isoAlpha3 ?code ; rdfs:label ?l FILTER(?code IN ('FRA', 'NOR')) }"
CROSS_PRODUCT = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"


def call(url: str, query: str | None = None, method: str = "GET", body: bytes | None = None,
         content_type: str | None = None, accept: str | None = None, params: dict | None = None, headers=None):
    """One HTTP exchange: (status, headers, body bytes)."""
    fields = dict(params or {})
    if query is not None and method == "GET":
        fields["query"] = query
    if query is not None and method == "POST" and body is None:
        body = urllib.parse.urlencode({"query": query, **(params or {})}, doseq=True).encode()
        content_type = content_type or "application/x-www-form-urlencoded"
        fields = {}
    target = url + ("?" + urllib.parse.urlencode(fields, doseq=True) if fields else "")
    headers = dict(headers or {})
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    return exchange(target, method, body, headers, timeout=30)


@pytest.fixture(scope="module")
def endpoint(app_server):
    return app_server.url + "/sparql"


def _codes(body: bytes) -> list[str]:
    return [b["code"]["value"] for b in json.loads(body)["results"]["bindings"]]


def test_get_form_post_and_direct_post_agree(endpoint):
    answers = [call(endpoint, CODES), call(endpoint, CODES, method="POST"),
               call(endpoint, method="POST", body=CODES.encode(), content_type="application/sparql-query")]
    for status, headers, body in answers:
        assert status == 200 and headers["Content-Type"].startswith("application/sparql-results+json")
        assert _codes(body) == ["FRA", "NOR"]


@pytest.mark.parametrize("accept,check", [
    ("application/sparql-results+json", lambda b: _codes(b)),
    ("application/sparql-results+xml", lambda b: [e.text for e in ET.fromstring(b).iter(
        "{http://www.w3.org/2005/sparql-results#}literal")]),
    ("text/csv", lambda b: [r["code"] for r in csv.DictReader(io.StringIO(b.decode()))]),
    ("text/tab-separated-values", lambda b: [line.strip('"') for line in b.decode().split("\n")[1:] if line]),
])
def test_every_results_format(endpoint, accept, check):
    status, headers, body = call(endpoint, CODES, accept=accept)
    assert status == 200 and headers["Content-Type"].startswith(accept)
    assert check(body) == ["FRA", "NOR"]


@pytest.mark.parametrize("accept,rdflib_format", [
    ("text/turtle", "turtle"), ("application/n-triples", "nt"), ("application/rdf+xml", "xml"),
    ("application/ld+json", "json-ld"), ("application/trig", "trig"), ("application/n-quads", "nquads")])
def test_every_graph_format(endpoint, store, accept, rdflib_format):
    status, headers, body = call(endpoint, CONSTRUCT, accept=accept)
    assert status == 200 and headers["Content-Type"].startswith(accept)
    parsed = Dataset() if rdflib_format in ("trig", "nquads") else Graph()
    parsed.parse(data=body, format=rdflib_format)
    labels = {str(o) for o in parsed.objects()}
    assert labels == {"France", "Norway"}


def test_ask_and_describe(endpoint):
    status, _, body = call(endpoint, "ASK { country:FRA cmc:isoAlpha2 'FR' }")
    assert status == 200 and json.loads(body)["boolean"] is True
    status, _, body = call(endpoint, "ASK { country:FRA cmc:isoAlpha2 'XX' }", accept="application/sparql-results+xml")
    assert status == 200 and b"<boolean>false</boolean>" in body
    status, headers, body = call(endpoint, "DESCRIBE country:NOR", accept="text/turtle")
    assert status == 200 and headers["Content-Type"].startswith("text/turtle")
    assert URIRef(PREFIXES["country"] + "NOR") in set(Graph().parse(data=body, format="turtle").subjects())


def test_accept_q_values_wildcards_and_format_parameter(endpoint):
    prefer_xml = "text/csv;q=0.5, application/sparql-results+xml;q=0.9"
    assert call(endpoint, CODES, accept=prefer_xml)[1]["Content-Type"].startswith("application/sparql-results+xml")
    assert call(endpoint, CODES, accept="*/*")[1]["Content-Type"].startswith("application/sparql-results+json")
    assert call(endpoint, CONSTRUCT, accept="*/*")[1]["Content-Type"].startswith("text/turtle")
    # YASGUI's headers.
    assert call(endpoint, CODES, method="POST", accept="application/sparql-results+json,*/*;q=0.9")[1][
        "Content-Type"].startswith("application/sparql-results+json")
    assert call(endpoint, CONSTRUCT, method="POST", accept="application/n-triples,*/*;q=0.9")[1][
        "Content-Type"].startswith("application/n-triples")
    # format= overrides Accept.
    status, headers, _ = call(endpoint, CODES, accept="application/sparql-results+xml", params={"format": "csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")


def test_the_same_accept_header_gets_the_same_choice_however_long(endpoint):
    """Choices are kept per Accept header (server/responses.py); a header too long to keep is matched anew."""
    filler = ", ".join(f"application/x-unknown-{n};q=0.1" for n in range(40))
    for accept in ("text/csv;q=0.5, application/sparql-results+xml;q=0.9",
                   filler + ", text/csv;q=0.5, application/sparql-results+xml;q=0.9"):
        for _ in range(2):
            assert call(endpoint, CODES, accept=accept)[1]["Content-Type"].startswith("application/sparql-results+xml")
            assert call(endpoint, CONSTRUCT, accept=accept)[0] == 406
    assert len(filler) > 512
    browser = filler + ", text/html, */*;q=0.8"
    assert b"<html" in call(endpoint, CODES, accept=browser)[2].lower()


@pytest.mark.parametrize("query,params,media_type", [
    # Virtuoso's and Oxigraph's names: "xml" and "json" name results for SELECT and ASK, RDF for graphs.
    (CONSTRUCT, {"format": "xml"}, "application/rdf+xml"),
    (CONSTRUCT, {"format": "rdf+xml"}, "application/rdf+xml"),
    (CONSTRUCT, {"format": "n3"}, "text/turtle"),
    (CONSTRUCT, {"format": "json"}, "application/ld+json"),
    (CODES, {"format": "xml"}, "application/sparql-results+xml"),
    (CODES, {"format": "json"}, "application/sparql-results+json"),
    # SPARQLWrapper's three parameters, and a name beside a media type; the first value known wins.
    (CODES, {"output": "csv"}, "text/csv"),
    (CODES, {"results": "tsv"}, "text/tab-separated-values"),
    (CODES, {"format": ["tsv", "text/tab-separated-values"], "output": ["tsv", "text/tab-separated-values"]},
     "text/tab-separated-values"),
    (CONSTRUCT, {"format": ["rdf+xml", "application/rdf+xml"]}, "application/rdf+xml"),
    # A value this server does not know falls back to Accept (here none: the default).
    (CODES, {"format": "pdf"}, "application/sparql-results+json"),
    (CONSTRUCT, {"format": "csv"}, "text/turtle"),
])
def test_format_parameter_values_clients_send(endpoint, query, params, media_type):
    status, headers, body = call(endpoint, query, params=params)
    assert status == 200 and headers["Content-Type"].startswith(media_type)
    if media_type == "application/rdf+xml":
        turtle = Graph().parse(data=call(endpoint, CONSTRUCT, accept="text/turtle")[2], format="turtle")
        assert len(turtle) > 0 and set(Graph().parse(data=body, format="xml")) == set(turtle)
    if media_type == "text/csv":
        assert body.decode().split() == ["code", "FRA", "NOR"]


def test_unknown_format_value_falls_back_to_accept(endpoint):
    status, headers, body = call(endpoint, CODES, accept="text/csv", params={"format": "pdf"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def test_a_browser_gets_the_query_page_and_clients_their_answers(endpoint):
    for how in ("GET", "POST"):  # a link, or the query page's form sent without its script
        status, headers, body = call(endpoint, CODES, method=how, accept=BROWSER_ACCEPT)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "Accept" in headers["Vary"]
        page = body.decode("utf-8")
        assert '"autorun": true' in page and "FILTER(?code IN (&#39;FRA&#39;, &#39;NOR&#39;))" in page
    assert call(endpoint, CODES, accept="text/html")[1]["Content-Type"].startswith("text/html")
    assert call(endpoint, CODES, params={"format": "html"})[1]["Content-Type"].startswith("text/html")
    # A wildcard, an explicit format or an API client's Accept keep the answer.
    for accept, params, media_type in [("*/*", None, "application/sparql-results+json"),
                                       (None, None, "application/sparql-results+json"),
                                       (BROWSER_ACCEPT, {"format": "json"}, "application/sparql-results+json"),
                                       (BROWSER_ACCEPT, {"format": "csv"}, "text/csv"),
                                       ("application/sparql-results+xml, text/html;q=0.5", None,
                                        "application/sparql-results+xml")]:
        status, headers, _ = call(endpoint, CODES, accept=accept, params=params)
        assert status == 200 and headers["Content-Type"].startswith(media_type), (accept, params)


def test_head_is_answered_as_get_without_a_body(endpoint):
    _, got, body = call(endpoint, CODES)
    status, headers, empty = call(endpoint, method="HEAD", params={"query": CODES})
    assert status == 200 and empty == b"" and body
    assert headers["Content-Type"] == got["Content-Type"] and headers["ETag"] == got["ETag"]
    assert int(headers["Content-Length"]) == len(body)


LATIN_QUERY = "SELECT ?c WHERE { ?c rdfs:label 'Curaçao'@en }"


@pytest.mark.parametrize("charset", ["ISO-8859-1", "latin1", "UTF-16", "utf-8"])
def test_a_body_is_decoded_by_its_charset(endpoint, charset):
    direct = call(endpoint, method="POST", body=LATIN_QUERY.encode(charset), accept="text/csv",
                  content_type=f"application/sparql-query; charset={charset}")
    form = call(endpoint, method="POST", accept="text/csv",
                body=urllib.parse.urlencode({"query": LATIN_QUERY}, encoding=charset).encode("ascii"),
                content_type=f"application/x-www-form-urlencoded; charset={charset}")
    for status, _, body in (direct, form):
        assert status == 200 and body.decode().split() == ["c", PREFIXES["country"] + "CUW"]


def test_an_unknown_charset_or_undecodable_body_gets_400(endpoint):
    for charset in ("x-nope", "base64"):  # unknown, and not a text encoding
        status, _, body = call(endpoint, method="POST", body=b"ASK {}",
                               content_type=f"application/sparql-query; charset={charset}")
        assert status == 400 and f"unknown charset '{charset}'".encode() in body
    status, _, body = call(endpoint, method="POST", body=LATIN_QUERY.encode("latin-1"),
                           content_type="application/sparql-query")  # no charset: UTF-8, which this is not
    assert status == 400 and b"not valid utf-8" in body
    status, _, body = call(endpoint, method="POST", body=b"query=ASK%7B%7D%FF",
                           content_type="application/x-www-form-urlencoded; charset=utf-8")
    assert status == 400 and b"not valid utf-8" in body


def test_large_answers_are_compressed_with_their_own_etag(endpoint):
    query = "SELECT ?s ?label WHERE { ?s rdfs:label ?label } ORDER BY ?s ?label"
    _, plain, body = call(endpoint, query)
    status, headers, packed = call(endpoint, query, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
    assert gzip.decompress(packed) == body and len(packed) < len(body) / 4
    assert "Content-Encoding" not in plain and "Accept-Encoding" in plain["Vary"]
    assert headers["ETag"] != plain["ETag"]  # another representation: a cache never mixes them up
    assert call(endpoint, query, headers={"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]})[0] == 304
    assert call(endpoint, query, headers={"If-None-Match": plain["ETag"]})[0] == 304
    # A client that no longer takes gzip does not get a 304 for the gzip copy it holds.
    assert call(endpoint, query, headers={"If-None-Match": headers["ETag"]})[0] == 200
    _, small, _ = call(endpoint, CODES, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small


def test_default_and_named_graph_parameters(endpoint, store):
    monitor = str(GRAPH["monitor-2022"])
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    expected = select(store, f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{monitor}> {{ ?s ?p ?o }} }}").rows[0]["n"]
    status, _, body = call(endpoint, count, params={"default-graph-uri": monitor})
    assert status == 200 and json.loads(body)["results"]["bindings"][0]["n"]["value"] == expected
    status, _, body = call(endpoint, "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }",
                           params={"named-graph-uri": [monitor, str(GRAPH["seed-000"])]})
    assert sorted(b["g"]["value"] for b in json.loads(body)["results"]["bindings"]) == sorted(
        [monitor, str(GRAPH["seed-000"])])
    # FROM names a graph of the dataset; it replaces the union default graph.
    status, _, body = call(endpoint, f"SELECT (COUNT(*) AS ?n) FROM <{monitor}> WHERE {{ ?s ?p ?o }}")
    assert json.loads(body)["results"]["bindings"][0]["n"]["value"] == expected


def test_error_statuses(endpoint):
    status, headers, body = call(endpoint, "SELECT ?x WHERE { ?x")
    assert status == 400 and headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b"malformed query:") and b"1:21" in body  # where the parser stopped
    assert call(endpoint, params={"query": [CODES, CODES]})[0] == 400
    assert call(endpoint, method="POST", body=b"", content_type="application/x-www-form-urlencoded")[0] == 400
    assert call(endpoint, CODES, method="PUT", body=b"x", content_type="text/plain")[0] == 405
    assert call(endpoint, CODES, method="DELETE")[0] == 405
    assert call(endpoint, CODES, accept="image/png")[0] == 406
    assert call(endpoint, CODES, accept="image/png", params={"format": "pdf"})[0] == 406
    assert call(endpoint, method="POST", body=CODES.encode(), content_type="text/plain")[0] == 415


@pytest.mark.parametrize("how", ["query", "get-update", "post-update", "sparql-update", "load"])
def test_updates_are_refused(endpoint, how):
    update = "INSERT DATA { <urn:a> <urn:b> <urn:c> }"
    status, _, body = {
        "query": lambda: call(endpoint, update, method="POST"),
        "get-update": lambda: call(endpoint, params={"update": update}),
        "post-update": lambda: call(endpoint, method="POST", body=urllib.parse.urlencode({"update": update}).encode(),
                                    content_type="application/x-www-form-urlencoded"),
        "sparql-update": lambda: call(endpoint, method="POST", body=update.encode(),
                                      content_type="application/sparql-update"),
        "load": lambda: call(endpoint, "LOAD <http://127.0.0.1:9/x>", method="POST"),
    }[how]()
    assert status == 403 and b"read-only" in body
    assert call(endpoint, "ASK { <urn:a> <urn:b> <urn:c> }")[2] == b'{"head": {}, "boolean": false}'


def test_service_description_and_query_page(endpoint):
    status, headers, body = call(endpoint, accept="text/turtle")
    assert status == 200 and headers["Content-Type"].startswith("text/turtle")
    description = Graph().parse(data=body, format="turtle")
    service = URIRef(endpoint)
    assert (service, SD.endpoint, service) in description
    assert (service, SD.feature, SD.UnionDefaultGraph) in description
    assert URIRef(GRAPH["untc"]) in set(description.objects(None, SD.name))
    status, headers, _ = call(endpoint, accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert status == 200 and headers["Content-Type"].startswith("text/html")


def test_cors_without_credentials(endpoint):
    _, headers, _ = call(endpoint, CODES, headers={"Origin": "https://example.org"})
    assert headers["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in headers
    exposed = {name.strip().lower() for name in headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-sparql-maxrows", "etag"} <= exposed
    status, headers, _ = call(endpoint, method="OPTIONS", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    # A preflight for other headers (jQuery's X-Requested-With, a token) gets them allowed.
    status, headers, _ = call(endpoint, method="OPTIONS", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-requested-with, authorization"})
    allowed = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert status == 204 and {"x-requested-with", "authorization"} <= allowed
    assert "Access-Control-Allow-Credentials" not in headers


def test_answers_carry_etags_and_revalidate(endpoint):
    query = "SELECT (COUNT(*) AS ?n) WHERE { ?s a cmc:Signature }"
    _, first, body = call(endpoint, query)
    assert first["ETag"] and "Accept" in first["Vary"]
    _, second, again = call(endpoint, query)
    assert again == body and second["X-Cache"] == "hit" and second["ETag"] == first["ETag"]
    assert call(endpoint, query, headers={"If-None-Match": first["ETag"]})[0] == 304


class Listener:
    """A TCP listener on a free loopback port that records every connection attempt."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(0.2)
        self.connections, self._stop = [], False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/sparql"

    def _accept(self):
        while not self._stop:
            try:
                connection, _ = self.socket.accept()
                self.connections.append(connection)
            except (socket.timeout, OSError):
                continue

    def close(self):
        self._stop = True
        self.thread.join(timeout=2)
        self.socket.close()


def test_no_query_makes_the_server_connect_or_read_files(endpoint):
    listener = Listener()
    try:
        refused = [f"SELECT * WHERE {{ SERVICE <{listener.url}> {{ ?s ?p ?o }} }}",
                   f"SELECT * WHERE {{ SERVICE SILENT <{listener.url}> {{ ?s ?p ?o }} }}"]
        for query in refused:
            status, _, body = call(endpoint, query)
            assert status == 403 and b"allowlist" in body
        # FROM and FROM NAMED may only name graphs of the dataset: anything else is refused before evaluation.
        outside = [f"SELECT * FROM <{listener.url}> WHERE {{ ?s ?p ?o }}",
                   f"SELECT * FROM NAMED <{listener.url}> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}",
                   "SELECT * FROM <file:///etc/passwd> WHERE { ?s ?p ?o }"]
        for query in outside:
            status, _, body = call(endpoint, query)
            assert status == 403 and b"not a graph of this dataset" in body
        time.sleep(0.5)
        assert listener.connections == []
    finally:
        listener.close()


@pytest.fixture(scope="module")
def limited(built):
    """A server with small limits: 2 s per query, 50 rows, 5,000-byte requests."""
    live = start_server(built[0].build_dir, "--query-timeout", "2", "--max-rows", "50", "--max-request-bytes", "5000",
                        "--workers", "2", "--cache-entries", "0")
    yield live
    stop_server(live)


def test_the_default_row_cap_leaves_the_whole_graph_whole(endpoint, store):
    status, headers, body = call(endpoint, "SELECT * WHERE { ?s ?p ?o }", accept="text/tab-separated-values")
    assert status == 200 and "X-SPARQL-MaxRows" not in headers
    assert body.count(b"\n") - 1 == default_graph_size(store) > 25_000


@pytest.mark.system
def test_row_cap_is_signalled(limited):
    status, headers, body = call(limited.url + "/sparql", "SELECT ?s WHERE { ?s a cmc:Country }")
    assert status == 200 and headers["X-SPARQL-MaxRows"] == "50"
    assert len(json.loads(body)["results"]["bindings"]) == 50
    _, headers, _ = call(limited.url + "/sparql", CODES)
    assert "X-SPARQL-MaxRows" not in headers


@pytest.mark.system
def test_request_size_cap(limited):
    padding = "#" + "x" * 6000 + "\n"
    assert call(limited.url + "/sparql", padding + CODES)[0] == 413
    assert call(limited.url + "/sparql", padding + CODES, method="POST")[0] == 413
    assert call(limited.url + "/sparql", CODES)[0] == 200


def _children(pid: int) -> set[int]:
    """The direct children of a process (the query workers)."""
    children: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            children |= {int(child) for child in handle.read().split()}
    return children


@pytest.mark.system
def test_slow_query_is_stopped_while_others_are_answered(limited):
    """What users rely on, with bounds that hold on a busy machine: the cheap query is answered while the slow one
    still runs (before its 2 s limit), the slow one is stopped with 503, and the process that ran it is gone."""
    url = limited.url + "/sparql"
    workers = _children(limited.process.pid)
    outcome = {}

    def slow():
        started = time.monotonic()
        outcome["slow"] = call(url, CROSS_PRODUCT)[:1] + (time.monotonic() - started,)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    status, _, body = call(url, CODES)
    answered_while_running = thread.is_alive()
    thread.join(timeout=30)
    assert status == 200 and _codes(body) == ["FRA", "NOR"] and answered_while_running
    slow_status, slow_seconds = outcome["slow"]
    assert slow_status == 503 and 1.5 < slow_seconds < 2 + 10
    # The stopped query's process is gone (killed, and replaced by a fresh one): nothing keeps a core busy.
    assert workers - _children(limited.process.pid)
    assert call(url, CODES)[0] == 200
