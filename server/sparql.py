"""The SPARQL 1.1 Protocol at /sparql: read-only, negotiated, bounded in time, rows and size."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pyoxigraph as ox
from flask import Blueprint, Response, request
from rdflib import BNode, Graph, Literal, URIRef
from werkzeug.datastructures import MultiDict

from cmc_kg.contract import AnswerTooLarge, EngineBusy, QueryRequest, QueryTimeout, ServiceError
from cmc_kg.formats import RDF_FORMATS, RESULT_FORMATS
from cmc_kg.namespaces import RDF, SD, VOID, XSD, bind_prefixes
from cmc_kg.query import QueryError, internal_query
from cmc_kg.safety import QueryRefused, check_graphs

from .responses import browser_wants_html, error, negotiate, rdf_response, revalidated, wants_html
from .state import State
from .ui import query_page

__all__ = ["bp"]

bp = Blueprint("sparql", __name__)

# The graph changes only with a new build, whose id is in the ETag: caches may keep answers briefly and
# revalidate them cheaply.
CACHE_CONTROL = "public, max-age=60"


class _BadBody(ValueError):
    """A body that is not text in the charset it declares (or UTF-8 when it declares none)."""


def _decoded(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except UnicodeDecodeError as bad:
        raise _BadBody(f"the request body is not valid {charset} (byte {bad.start}): declare its charset in "
                       "Content-Type, e.g. application/sparql-query; charset=UTF-8") from None


def _form_fields(body: bytes, charset: str) -> MultiDict:
    """An application/x-www-form-urlencoded body, its percent-escapes read in the declared charset (Werkzeug
    reads every form as UTF-8, replacing what is not)."""
    fields: MultiDict[str, str] = MultiDict()
    for part in body.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            fields.add(*(_decoded(unquote_to_bytes(x.replace(b"+", b" ")), charset) for x in (name, value)))
    return fields


def _query_parameters() -> tuple[str | None, MultiDict] | Response:
    """The query text and the protocol parameters, from GET (or HEAD), a form POST or a direct POST, a body
    decoded by the charset it declares (UTF-8 when none); 400 for an unknown charset or bytes not in it."""
    if request.method in ("GET", "HEAD"):
        return request.args.get("query"), request.args
    if request.mimetype == "application/sparql-update":
        return error(403, "this endpoint is read-only: SPARQL updates are refused")
    if request.mimetype not in ("application/sparql-query", "application/x-www-form-urlencoded"):
        return error(415, f"unsupported request media type {request.mimetype or '(none)'!r}: send a query as "
                          "GET ?query=, POST application/x-www-form-urlencoded or POST application/sparql-query")
    charset = request.mimetype_params.get("charset", "utf-8")
    try:
        b"x".decode(charset)  # a text encoding Python knows (not a transform such as base64)
    except LookupError:
        return error(400, f"unknown charset {charset!r} in Content-Type: send the query in UTF-8")
    except UnicodeDecodeError:
        pass
    try:
        if request.mimetype == "application/sparql-query":
            return _decoded(request.get_data(), charset), request.args
        form = _form_fields(request.get_data(), charset)
    except _BadBody as bad:
        return error(400, str(bad))
    return form.get("query"), form


@bp.route("/sparql", methods=["GET", "POST", "OPTIONS"])
def sparql():
    if request.method == "OPTIONS":
        return Response(status=204)
    state = State.current()
    parsed = _query_parameters()
    if isinstance(parsed, Response):
        return parsed
    text, params = parsed
    if "update" in params:
        return error(403, "this endpoint is read-only: SPARQL updates are refused")
    if len(params.getlist("query")) > 1:
        return error(400, "more than one query parameter: send exactly one query")
    if not text:
        if request.method == "POST":
            return error(400, "no query: send it in the query parameter or as an application/sparql-query body")
        return service_description()
    if len(text.encode("utf-8")) > state.config.max_request_bytes:
        return error(413, f"the query is longer than the limit of {state.config.max_request_bytes} bytes")
    if browser_wants_html():  # a link to /sparql?query=… opened in a browser: the query page, which runs it
        return query_page(text)
    default_graphs = tuple(params.getlist("default-graph-uri")) or None
    named_graphs = tuple(params.getlist("named-graph-uri")) or None
    graphs = state.graphs
    try:  # the query itself is checked by the engine, where the time limit applies (cmc_kg/safety.py)
        check_graphs(default_graphs or (), graphs, "default-graph-uri")
        check_graphs(named_graphs or (), graphs, "named-graph-uri")
    except QueryRefused as refused:
        return error(403, str(refused))

    results_format, graph_format = negotiate(RESULT_FORMATS, "json"), negotiate(RDF_FORMATS, "turtle")
    if results_format is None and graph_format is None:
        response = error(406, "none of the accepted media types can be produced; results: "
                              + ", ".join(f.media_type for f in RESULT_FORMATS.values()) + "; graphs: "
                              + ", ".join(f.media_type for f in RDF_FORMATS.values()))
        response.vary.add("Accept")
        return response
    query = QueryRequest(
        text=text,
        results_format=results_format.name if results_format else None,
        graph_format=graph_format.name if graph_format else None,
        default_graphs=default_graphs,
        named_graphs=named_graphs,
        max_rows=state.config.max_rows,
        max_bytes=state.config.max_answer_bytes,
    )
    etag = state.etag(query)
    unchanged = revalidated(etag)
    if unchanged is not None:
        unchanged.headers["Cache-Control"] = CACHE_CONTROL
        return unchanged
    try:
        answer, cached = state.run(query)
    except QueryRefused as refused:
        return error(403, str(refused))
    except QueryError as malformed:
        return error(400, f"malformed query: {malformed}")
    except AnswerTooLarge as large:
        return error(413, str(large))
    except (QueryTimeout, EngineBusy) as stopped:
        response = error(503, f"{stopped}; simplify the query or ask for fewer results")
        response.headers["Retry-After"] = "1"
        return response
    except ServiceError as failed:
        return error(502, f"{failed}")
    table = RDF_FORMATS if answer.kind == "graph" else RESULT_FORMATS
    response = Response(answer.body, 200, mimetype=table[answer.format].media_type)
    if answer.truncated:
        response.headers["X-SPARQL-MaxRows"] = str(state.config.max_rows)
    response.headers["X-Cache"] = "hit" if cached else "miss"
    return _cache_headers(response, etag)


def _cache_headers(response: Response, etag: str) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.vary.add("Accept")
    return response


def service_description() -> Response:
    """GET /sparql without a query: the query page for browsers, a SPARQL 1.1 Service Description for RDF clients."""
    if wants_html():
        return query_page(None)
    state = State.current()
    graph = bind_prefixes(Graph())
    graph.bind("sd", SD)
    graph.bind("void", VOID)
    endpoint = URIRef(state.config.public_url + "/sparql")  # the setting, never the request's Host header
    graph.add((endpoint, RDF.type, SD.Service))
    graph.add((endpoint, SD.endpoint, endpoint))
    graph.add((endpoint, SD.supportedLanguage, SD.SPARQL11Query))
    graph.add((endpoint, SD.feature, SD.UnionDefaultGraph))
    if state.config.service_allowlist:
        graph.add((endpoint, SD.feature, SD.BasicFederatedQuery))
    for fmt in (ox.QueryResultsFormat.JSON, ox.QueryResultsFormat.XML, ox.QueryResultsFormat.CSV,
                ox.QueryResultsFormat.TSV, *[f.rdf_format for f in RDF_FORMATS.values()]):
        graph.add((endpoint, SD.resultFormat, URIRef(fmt.iri)))  # type: ignore[union-attr]
    dataset = BNode("dataset")
    graph.add((endpoint, SD.defaultDataset, dataset))
    graph.add((dataset, RDF.type, SD.Dataset))
    default = BNode("default")
    graph.add((dataset, SD.defaultGraph, default))
    graph.add((default, RDF.type, SD.Graph))
    graph.add((default, VOID.triples, Literal(state.triples, datatype=XSD.integer)))
    for row in state.select(internal_query("graph-sizes")):
        named, inner = BNode(), BNode()
        graph.add((dataset, SD.namedGraph, named))
        graph.add((named, RDF.type, SD.NamedGraph))
        graph.add((named, SD.name, URIRef(row["g"]["value"])))
        graph.add((named, SD.graph, inner))
        graph.add((inner, RDF.type, SD.Graph))
        graph.add((inner, VOID.triples, Literal(int(row["n"]["value"]), datatype=XSD.integer)))
    return rdf_response(graph)
