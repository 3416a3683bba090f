"""The SPARQL 1.1 Protocol at /sparql: read-only, negotiated, bounded in time, rows and size."""

from __future__ import annotations

import pyoxigraph as ox
from flask import Blueprint, Response, request
from rdflib import BNode, Graph, Literal, URIRef
from werkzeug.datastructures import MultiDict

from cmc_kg.contract import (AnswerTooLarge, EngineBusy, NotAcceptable, OutOfMemory, QueryRequest, QueryTimeout,
                             ServiceError, WorkerCrashed)
from cmc_kg.formats import RDF_FORMATS, RESULT_FORMATS, Format, by_name_or_type, write_triples
from cmc_kg.namespaces import RDF, SD, VOID, XSD, bind_prefixes
from cmc_kg.query import QueryError
from cmc_kg.safety import QueryRefused, check_graphs

from .admission import TooManyQueries
from .state import State

__all__ = ["bp", "negotiate", "rdf_response", "error"]

bp = Blueprint("sparql", __name__)


def error(status: int, message: str) -> Response:
    """A plain-text error, the way SPARQL clients show it to their users."""
    return Response(message.rstrip() + "\n", status, mimetype="text/plain")


def negotiate(table: dict[str, Format], default: str, extra: tuple[str, ...] = ()) -> Format | str | None:
    """The format to answer in: the `format` parameter, else the best Accept match (q-values, */*).

    Media types in ``extra`` (such as text/html) are offered too and returned as strings when they win.
    """
    wanted = request.values.get("format")
    if wanted:
        return by_name_or_type(wanted, table)
    if not request.accept_mimetypes:
        return table[default]
    offered = list(extra) + [table[default].media_type] + [t for f in table.values() for t in f.media_types]
    best = request.accept_mimetypes.best_match(offered)
    if best is None:
        return None
    return best if best in extra else by_name_or_type(best, table)


def rdf_response(graph: Graph, status: int = 200) -> Response:
    """An rdflib graph in the negotiated RDF format (406 when none is acceptable)."""
    fmt = negotiate(RDF_FORMATS, "turtle")
    if fmt is None:
        return error(406, "none of the accepted media types is an RDF format this server writes: "
                          + ", ".join(f.media_type for f in RDF_FORMATS.values()))
    data = graph.serialize(format="nt", encoding="utf-8")
    triples = [q.triple for q in ox.parse(data, format=ox.RdfFormat.N_TRIPLES)]
    prefixes = {p: str(ns) for p, ns in graph.namespaces()}
    response = Response(write_triples(triples, fmt, prefixes), status, mimetype=fmt.media_type)
    response.vary.add("Accept")
    return response


def _query_parameters() -> tuple[str | None, MultiDict] | Response:
    """The query text and the protocol parameters, from GET, a form POST or a direct POST."""
    if request.method == "GET":
        return request.args.get("query"), request.args
    if request.mimetype == "application/sparql-query":
        return request.get_data(as_text=True), request.args
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.get("query"), request.form
    if request.mimetype == "application/sparql-update":
        return error(403, "this endpoint is read-only: SPARQL updates are refused")
    return error(415, f"unsupported request media type {request.mimetype or '(none)'!r}: send a query as "
                      "GET ?query=, POST application/x-www-form-urlencoded or POST application/sparql-query")


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
    default_graphs = tuple(params.getlist("default-graph-uri")) or None
    named_graphs = tuple(params.getlist("named-graph-uri")) or None
    graphs = state.graphs
    try:  # the query itself is checked by the engine, where the time limit applies (cmc_kg/safety.py)
        check_graphs(default_graphs or (), graphs, "default-graph-uri")
        check_graphs(named_graphs or (), graphs, "named-graph-uri")
    except QueryRefused as refused:
        return error(403, str(refused))

    wanted = request.values.get("format")
    if wanted and by_name_or_type(wanted, RESULT_FORMATS) is None and by_name_or_type(wanted, RDF_FORMATS) is None:
        return error(406, f"unknown format {wanted!r}; known: "
                          + ", ".join(list(RESULT_FORMATS) + list(RDF_FORMATS)))
    results_format, graph_format = negotiate(RESULT_FORMATS, "json"), negotiate(RDF_FORMATS, "turtle")
    if results_format is None and graph_format is None:
        return error(406, "none of the accepted media types can be produced; results: "
                          + ", ".join(f.media_type for f in RESULT_FORMATS.values()) + "; graphs: "
                          + ", ".join(f.media_type for f in RDF_FORMATS.values()))
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
    if etag in request.if_none_match:
        return _cache_headers(Response(status=304), etag)
    try:
        answer, cached = state.run(query)
    except QueryRefused as refused:
        return error(403, str(refused))
    except QueryError as malformed:
        return error(400, f"malformed query: {malformed}")
    except AnswerTooLarge as large:
        return error(413, str(large))
    except NotAcceptable as refused:
        return _not_acceptable(refused)
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


@bp.app_errorhandler(QueryTimeout)
@bp.app_errorhandler(EngineBusy)
def _unavailable(stopped: Exception) -> Response:
    """Any page whose query was stopped or found no worker (entity pages, the ontology, VoID): 503, never 500."""
    response = error(503, f"{stopped}; try again")
    response.headers["Retry-After"] = "1"
    return response


@bp.app_errorhandler(WorkerCrashed)
@bp.app_errorhandler(OutOfMemory)
def _not_retried(failure: Exception) -> Response:
    """A query that crashed or exhausted its worker would do so again: no Retry-After (500 for a crash, which is
    a defect; 503 for memory, which the service cannot afford)."""
    return error(500 if isinstance(failure, WorkerCrashed) else 503, str(failure))


@bp.app_errorhandler(TooManyQueries)
def _throttled(refused: TooManyQueries) -> Response:
    """A client over its share of the query workers (server/admission.py), on /sparql or any page: 429."""
    response = error(429, str(refused))
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


@bp.app_errorhandler(NotAcceptable)
def _not_acceptable(refused: NotAcceptable) -> Response:
    """406: the client accepts no format of the answer's kind ('results', 'graph'), or the format chosen cannot
    hold this answer (a writer's NotRepresentable, with its reason), on /sparql and on every page."""
    message = str(refused)
    if message in ("results", "graph"):
        message = f"the query gives {message} and none of the accepted media types can hold them"
    response = error(406, message)
    response.vary.add("Accept")
    return response


@bp.app_errorhandler(QueryError)
def _malformed(malformed: QueryError) -> Response:
    """A page whose address gives a query Oxigraph cannot parse (an IRI it refuses): the client's request is bad."""
    return error(400, f"this address does not name anything a query can ask about: {malformed}")


def _cache_headers(response: Response, etag: str) -> Response:
    # The graph changes only with a new build, whose id is in the ETag: caches may keep answers briefly
    # and revalidate them cheaply.
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=60"
    response.vary.add("Accept")
    return response


def service_description() -> Response:
    """GET /sparql without a query: the query page for browsers, a SPARQL 1.1 Service Description for RDF clients."""
    if negotiate(RDF_FORMATS, "turtle", extra=("text/html",)) == "text/html":
        from .ui import query_page

        return query_page()
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
        graph.add((endpoint, SD.resultFormat, URIRef(fmt.iri)))
    dataset = BNode("dataset")
    graph.add((endpoint, SD.defaultDataset, dataset))
    graph.add((dataset, RDF.type, SD.Dataset))
    default = BNode("default")
    graph.add((dataset, SD.defaultGraph, default))
    graph.add((default, RDF.type, SD.Graph))
    graph.add((default, VOID.triples, Literal(state.triples, datatype=XSD.integer)))
    for row in state.select("SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g ORDER BY ?g"):
        named, inner = BNode(), BNode()
        graph.add((dataset, SD.namedGraph, named))
        graph.add((named, RDF.type, SD.NamedGraph))
        graph.add((named, SD.name, URIRef(row["g"]["value"])))
        graph.add((named, SD.graph, inner))
        graph.add((inner, RDF.type, SD.Graph))
        graph.add((inner, VOID.triples, Literal(int(row["n"]["value"]), datatype=XSD.integer)))
    return rdf_response(graph)
