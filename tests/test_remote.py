"""`cmc-kg push` and `cmc-kg serve --store` against a real Oxigraph server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from cmc_kg.namespaces import GRAPH
from cmc_kg.query import example_queries, select
from conftest import start_oxigraph, start_server, stop_server

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def oxigraph(tmp_path_factory):
    """An Oxigraph server with an empty store; yields its base URL."""
    url, process = start_oxigraph(tmp_path_factory.mktemp("oxigraph"))
    yield url
    process.terminate()
    process.wait(timeout=10)


def _remote_select(url: str, query: str) -> list[dict]:
    request = urllib.request.Request(url + "/query", urllib.parse.urlencode({"query": query}).encode(),
                                     {"Accept": "application/sparql-results+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["results"]["bindings"]


def _row(row: dict[str, str]) -> tuple:
    """A row to compare across engines: GROUP_CONCAT lists in any order."""
    return tuple(sorted((k, "; ".join(sorted(v.split("; ")))) for k, v in row.items()))


def _push(built, oxigraph):
    return subprocess.run([sys.executable, "-m", "cmc_kg.cli", "push", "--endpoint", oxigraph + "/store",
                           "--build-dir", str(built[0].build_dir)], capture_output=True, text=True, timeout=120)


def _graph_sizes(url: str) -> dict[str, int]:
    rows = _remote_select(url, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g")
    return {r["g"]["value"]: int(r["n"]["value"]) for r in rows}


def test_push_uploads_every_graph_and_replaces_the_previous_upload(built, store, oxigraph):
    stale, foreign = str(GRAPH["withdrawn-source"]), "http://example.org/someone-elses-graph"
    for graph in (stale, foreign):
        urllib.request.urlopen(urllib.request.Request(
            f"{oxigraph}/store?{urllib.parse.urlencode({'graph': graph})}", b"<urn:a> <urn:b> <urn:c> .\n",
            {"Content-Type": "application/n-triples"}, method="PUT"), timeout=10)
    result = _push(built, oxigraph)
    assert result.returncode == 0, result.stderr
    local = {r["g"]: int(r["n"]) for r in select(
        store, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g").rows}
    assert _graph_sizes(oxigraph) == {**local, foreign: 1}
    assert _push(built, oxigraph).returncode == 0
    assert _graph_sizes(oxigraph) == {**local, foreign: 1}
    merged = select(store, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }").rows[0]["n"]
    assert _remote_select(oxigraph, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")[0]["n"]["value"] == merged


def test_serve_over_the_remote_store_answers_like_the_embedded_one(built, store, oxigraph):
    assert _push(built, oxigraph).returncode == 0
    live = start_server(built[0].build_dir, "--store", oxigraph + "/query")
    try:
        for example in example_queries():
            request = urllib.request.Request(live.url + "/sparql", urllib.parse.urlencode(
                {"query": example.text}).encode(), {"Accept": "application/sparql-results+json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            remote = sorted(_row({k: v["value"] for k, v in b.items()}) for b in answer["results"]["bindings"])
            local = sorted(_row(row) for row in select(store, example.text).rows)
            assert remote == local, example.path.name
    finally:
        stop_server(live)
