"""The fast path for /sparql (server/sparql.py FastPath) answers exactly as the Flask view: same status, headers in
the same order, same body, for answers and for every failure, which it hands to the view."""

from __future__ import annotations

import urllib.parse

import pytest
from werkzeug.test import Client

from cmc_kg.namespaces import SOURCES_GRAPH

from conftest import in_process_server

ASK = "ASK { country:FRA ?p ?o }"
SELECT = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"
DESCRIBE = "DESCRIBE country:FRA"
MANY = "SELECT ?s ?p ?o WHERE { ?s ?p ?o } ORDER BY ?s ?p ?o LIMIT 300"

# (query parameters, request headers): answers in every format, gzip, a dataset, and failures of each kind
ANSWERED = [
    ({"query": ASK}, {"Accept": "application/sparql-results+json"}),
    ({"query": SELECT}, {}),
    ({"query": SELECT}, {"Accept": "application/sparql-results+xml"}),
    ({"query": SELECT}, {"Accept": "text/csv"}),
    ({"query": SELECT, "format": "tsv"}, {"Accept": "application/sparql-results+json"}),
    ({"query": SELECT, "output": "json", "results": "application/sparql-results+json"}, {"Accept": "*/*"}),
    ({"query": DESCRIBE}, {"Accept": "text/turtle"}),
    ({"query": DESCRIBE}, {"Accept": "application/rdf+xml;q=0.9, application/n-triples"}),
    ({"query": DESCRIBE, "format": "xml"}, {}),
    ({"query": MANY}, {"Accept-Encoding": "gzip, deflate"}),
    ({"query": MANY}, {"Accept-Encoding": "gzip;q=0"}),
    ({"query": MANY}, {}),  # cut at max_rows: X-SPARQL-MaxRows
    ({"query": SELECT, "default-graph-uri": str(SOURCES_GRAPH)}, {}),
]
HANDED_TO_THE_VIEW = [
    ({"query": "SELECT * WHERE { ?s ?p }"}, {}),  # malformed: 400
    ({"query": "SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }"}, {}),  # refused: 403
    ({"query": DESCRIBE}, {"Accept": "application/sparql-results+json"}),  # no graph format: 406
    ({"query": ASK}, {"Accept": "image/png"}),  # nothing acceptable: 406
    ({"query": ASK, "default-graph-uri": "http://example.org/elsewhere"}, {}),  # 403 before the engine
    ({"query": ASK, "update": "DROP ALL"}, {}),
    ({"query": [ASK, SELECT]}, {}),
    ({"query": SELECT}, {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}),  # a browser
    ({"query": SELECT}, {"If-None-Match": '"x"'}),
]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DIRECT = {"Content-Type": "application/sparql-query"}
# (query string parameters, body, request headers) of POST requests
POSTED = [
    ({}, urllib.parse.urlencode({"query": SELECT}), FORM),
    ({"format": "xml"}, urllib.parse.urlencode({"query": SELECT, "output": "csv"}), FORM),  # format first
    ({}, urllib.parse.urlencode({"query": DESCRIBE, "format": "nt"}), {**FORM, "Accept": "text/turtle"}),
    ({"format": "tsv"}, SELECT, DIRECT),
    ({"default-graph-uri": str(SOURCES_GRAPH)}, SELECT, {"Content-Type": "application/sparql-query; charset=UTF-8"}),
    ({}, "ASK { ?s rdfs:label \"Côte d'Ivoire\"@en }".encode("latin-1"),
     {"Content-Type": "application/sparql-query; charset=ISO-8859-1"}),
]
POSTED_TO_THE_VIEW = [
    ({}, "INSERT DATA { <a:b> <a:c> <a:d> }", {"Content-Type": "application/sparql-update"}),  # 403
    ({}, SELECT, {"Content-Type": "text/plain"}),  # 415
    ({}, SELECT, {"Content-Type": "application/sparql-query; charset=x-unknown"}),  # 400
    ({}, b"ASK { ?s ?p \"\xff\" }", DIRECT),  # not UTF-8: 400
    ({}, "", DIRECT),  # no query: 400
    ({}, urllib.parse.urlencode({"query": ASK, "update": "DROP ALL"}), FORM),
    ({}, "x" * 2_000_000, DIRECT),  # past max_request_bytes: 413
]


@pytest.fixture(scope="module")
def app(store, built):
    return in_process_server(store, "http://fast-path.test", build_dir=str(built[0].build_dir), max_rows=200,
                             cache_entries=0).client.application


def _answer(wsgi, params: dict, headers: dict, method: str = "GET", body: str | bytes | None = None):
    response = Client(wsgi).open("/sparql", method=method, query_string=urllib.parse.urlencode(params, doseq=True),
                                 headers=headers, data=body)
    return response.status, list(response.headers.items()), response.get_data()


def _views(app) -> list[int]:
    """A counter of the requests that reached Flask's view functions."""
    seen: list[int] = []
    app.before_request_funcs.setdefault(None, []).append(lambda: seen.append(1) and None)
    return seen


@pytest.mark.parametrize("params, headers", ANSWERED)
def test_fast_path_answers_as_the_view(app, params, headers):
    views = _views(app)
    fast = _answer(app.wsgi_app, params, headers)
    assert not views, "the fast path handed an answerable request to Flask"
    assert fast == _answer(app.wsgi_app.flask, params, headers)
    assert fast[0] == "200 OK"


@pytest.mark.parametrize("params, headers", HANDED_TO_THE_VIEW)
def test_what_the_fast_path_does_not_answer_is_answered_by_the_view(app, params, headers):
    views = _views(app)
    fast = _answer(app.wsgi_app, params, headers)
    assert views
    assert fast == _answer(app.wsgi_app.flask, params, headers)


@pytest.mark.parametrize("params, body, headers", POSTED)
def test_fast_path_answers_posts_as_the_view(app, params, body, headers):
    views = _views(app)
    fast = _answer(app.wsgi_app, params, headers, "POST", body)
    assert not views, "the fast path handed an answerable request to Flask"
    assert fast == _answer(app.wsgi_app.flask, params, headers, "POST", body)
    assert fast[0] == "200 OK"


@pytest.mark.parametrize("params, body, headers", POSTED_TO_THE_VIEW)
def test_posts_the_fast_path_does_not_answer_are_answered_by_the_view_body_and_all(app, params, body, headers):
    views = _views(app)
    fast = _answer(app.wsgi_app, params, headers, "POST", body)
    assert views
    assert fast == _answer(app.wsgi_app.flask, params, headers, "POST", body)
    assert not fast[0].startswith("200")


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_other_methods_go_to_the_view(app, method):
    views = _views(app)
    fast = _answer(app.wsgi_app, {"query": ASK}, {}, method)
    assert views
    assert fast == _answer(app.wsgi_app.flask, {"query": ASK}, {}, method)


def test_a_failed_query_is_not_run_twice(app):
    """The view answers the fast path's failure from the failure, not by running the query again."""
    engine = app.extensions["cmc_kg"].engine
    runs: list[str] = []
    original = engine.run
    engine.run = lambda request: runs.append(request.text) or original(request)
    try:
        status, _, body = _answer(app.wsgi_app, {"query": "SELECT * WHERE { ?s ?p }"}, {})
    finally:
        engine.run = original
    assert status.startswith("400") and b"malformed query" in body
    assert len(runs) == 1
