"""The first SPARQL endpoint, through a real `cmc-kg serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from SPARQLWrapper import JSON, POST, SPARQLWrapper

pytestmark = pytest.mark.system

QUERY = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"


@pytest.fixture(scope="module")
def endpoint(server):
    return server.url + "/sparql"


def _request(url, data=None, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode("utf-8")


def test_sparqlwrapper_get_and_post_get_json(endpoint):
    for method in ("GET", POST):
        client = SPARQLWrapper(endpoint)
        client.setQuery(QUERY)
        client.setReturnFormat(JSON)
        client.setMethod(method)
        bindings = client.query().convert()["results"]["bindings"]
        assert [b["code"]["value"] for b in bindings] == ["FRA", "NOR"]


def test_post_sparql_query_body(endpoint):
    status, mime, body = _request(endpoint, QUERY.encode(), {"Content-Type": "application/sparql-query",
                                                             "Accept": "application/sparql-results+json"})
    assert status == 200 and mime.startswith("application/sparql-results+json")
    assert len(json.loads(body)["results"]["bindings"]) == 2


def test_malformed_query_is_400_with_parser_message(endpoint):
    status, _, body = _request(endpoint + "?" + urllib.parse.urlencode({"query": "SELECT ?x WHERE { ?x"}))
    assert status == 400 and "malformed query" in body and "error" in body.lower()


def test_update_is_refused(endpoint):
    status, _, body = _request(endpoint, urllib.parse.urlencode({"query": "INSERT DATA { <a:b> <a:c> <a:d> }"}).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and "read-only" in body


def test_service_is_refused_without_any_connection(endpoint):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(2)
    connections = []
    threading.Thread(target=lambda: _accept(listener, connections), daemon=True).start()
    target = f"http://127.0.0.1:{listener.getsockname()[1]}/sparql"
    query = f"SELECT * WHERE {{ SERVICE <{target}> {{ ?s ?p ?o }} }}"
    status, _, body = _request(endpoint + "?" + urllib.parse.urlencode({"query": query}))
    time.sleep(1)
    assert status == 403 and "allowlist" in body
    assert connections == []


def _accept(listener, connections):
    try:
        connections.append(listener.accept())
    except OSError:
        pass


def test_health_names_both_counts_as_the_build_reports_them(server, built):
    """The build's asserted + inferred triples are quads over the named graphs; the merged default graph holds
    fewer, since a fact stated by two sources is one triple there. /health names both."""
    with urllib.request.urlopen(server.url + "/health", timeout=30) as response:
        health = json.loads(response.read())
    report = built[1]
    assert health["quads"] == report.asserted_triples + report.inferred_triples
    assert health["default_graph_triples"] == report.distinct_triples < health["quads"]
