"""The SPARQL 1.1 Protocol at /sparql: read-only, negotiated, bounded in time, rows and size."""

from __future__ import annotations

import io
from typing import Callable
from urllib.parse import parse_qsl, unquote_to_bytes

import pyoxigraph as ox
from flask import Blueprint, Flask, Response, request
from rdflib import BNode, Graph, Literal, URIRef
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from werkzeug.http import parse_options_header
from werkzeug.utils import get_content_type

from cmc_kg.contract import AnswerTooLarge, EngineBusy, QueryRequest, QueryTimeout, ServiceError
from cmc_kg.formats import RDF_FORMATS, RESULT_FORMATS, Format
from cmc_kg.namespaces import RDF, SD, VOID, XSD, bind_prefixes
from cmc_kg.query import QueryError, internal_query
from cmc_kg.safety import QueryRefused, check_graphs

from .responses import (EXPOSED_HEADERS, GZIP_MIN_BYTES, GZIP_SUFFIX, accepts_gzip, browser_wants_html, choose_format,
                        error, format_values_in, gzipped, negotiate, prefers_html, rdf_response, revalidated,
                        wants_html)
from .state import State
from .ui import query_page

__all__ = ["bp", "FastPath"]

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


class _Refused(Exception):
    """A request whose parameters cannot be read: answered with ``status`` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _query_parameters() -> tuple[str | None, MultiDict] | Response:
    try:
        return _parameters(request.method, request.mimetype, request.mimetype_params, request.args, request.get_data)
    except _Refused as refused:
        return error(refused.status, str(refused))


def _parameters(method: str, mimetype: str, mimetype_params: dict, args: MultiDict, body: Callable[[], bytes]):
    """The query text and the protocol parameters, from GET (or HEAD), a form POST or a direct POST, a body
    decoded by the charset it declares (UTF-8 when none); _Refused 400 for an unknown charset or bytes not in it,
    403 for an update, 415 for any other body."""
    if method in ("GET", "HEAD"):
        return args.get("query"), args
    if mimetype == "application/sparql-update":
        raise _Refused(403, "this endpoint is read-only: SPARQL updates are refused")
    if mimetype not in ("application/sparql-query", "application/x-www-form-urlencoded"):
        raise _Refused(415, f"unsupported request media type {mimetype or '(none)'!r}: send a query as GET ?query=, "
                            "POST application/x-www-form-urlencoded or POST application/sparql-query")
    charset = mimetype_params.get("charset", "utf-8")
    try:
        b"x".decode(charset)  # a text encoding Python knows (not a transform such as base64)
    except LookupError:
        raise _Refused(400, f"unknown charset {charset!r} in Content-Type: send the query in UTF-8") from None
    except UnicodeDecodeError:
        pass
    try:
        if mimetype == "application/sparql-query":
            return _decoded(body(), charset), args
        form = _form_fields(body(), charset)
    except _BadBody as bad:
        raise _Refused(400, str(bad)) from None
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
        answer, cached = _run(state, query)
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


def _run(state: State, query: QueryRequest):
    """The answer, or the failure the fast path met running this very query (it is not run twice)."""
    failure = request.environ.pop(_FAILURE, None)
    if failure is not None:
        raise failure
    return state.run(query)


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


_FAILURE = "cmc_kg.fast_path_failure"  # the exception the fast path met, for the view to answer


class FastPath:
    """WSGI in front of the Flask app that answers the common /sparql request (GET or POST with one query and an
    answer to send) from the environ, without Flask's request, routing and response objects, which cost about as much
    as the rest of the request. The view above stays the definition: anything else (another page, HEAD, OPTIONS,
    a conditional request, a browser, any request to refuse) goes to it unchanged, and so does a query that
    fails, with the failure, so that it is answered as the view answers it without running the query twice.
    tests/test_fast_path.py compares the two answers header by header."""

    def __init__(self, app: Flask):
        self.flask = app.wsgi_app
        self.state: State = app.extensions["cmc_kg"]

    def __call__(self, environ: dict, start_response):
        query = self._query(environ) if environ.get("PATH_INFO") == "/sparql" else None
        if query is None:
            return self.flask(environ, start_response)
        state = self.state
        etag = state.etag(query)
        try:
            answer, cached = state.run(query, environ.get("REMOTE_ADDR"))
        except Exception as failure:
            environ[_FAILURE] = failure
            return self.flask(environ, start_response)
        body = answer.body
        headers = [("Content-Type", _content_type(answer.kind, answer.format)), ("Content-Length", "")]
        if answer.truncated:
            headers.append(("X-SPARQL-MaxRows", str(state.config.max_rows)))
        gzip = len(body) >= GZIP_MIN_BYTES and accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        if gzip:
            body, etag = gzipped(body), etag + GZIP_SUFFIX
        headers.append(("X-Cache", "hit" if cached else "miss"))
        headers.append(("ETag", f'"{etag}"'))
        headers.extend(_ANSWER_HEADERS if not gzip else _GZIP_ANSWER_HEADERS)
        headers[1] = ("Content-Length", str(len(body)))
        start_response("200 OK", headers)
        return [body]

    def _query(self, environ: dict) -> QueryRequest | None:
        """The request's query as the view would send it to the engine; None for anything the view must answer."""
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "POST") or "HTTP_IF_NONE_MATCH" in environ or environ.get("SCRIPT_NAME"):
            return None
        config = self.state.config
        try:  # as Werkzeug reads request.args, request.mimetype and the body
            args = MultiDict(parse_qsl(environ.get("QUERY_STRING", "").encode("latin1").decode(),
                                       keep_blank_values=True, errors="werkzeug.url_quote"))
            mimetype, mimetype_params = parse_options_header(environ.get("CONTENT_TYPE", ""))
            text, params = _parameters(method, mimetype.lower(), mimetype_params, args,
                                       lambda: self._body(environ, config.max_request_bytes))
        except (UnicodeError, ValueError, _Refused):
            return None
        if not text or len(params.getlist("query")) > 1 or "update" in params \
                or len(text.encode("utf-8")) > config.max_request_bytes:
            return None
        values = format_values_in(args if params is args else CombinedMultiDict([args, params]))  # request.values
        accept = environ.get("HTTP_ACCEPT", "")
        if prefers_html(values, accept):
            return None
        default_graphs = tuple(params.getlist("default-graph-uri")) or None
        named_graphs = tuple(params.getlist("named-graph-uri")) or None
        if default_graphs or named_graphs:
            try:
                check_graphs(default_graphs or (), self.state.graphs, "default-graph-uri")
                check_graphs(named_graphs or (), self.state.graphs, "named-graph-uri")
            except QueryRefused:
                return None
        results_format = choose_format(values, accept, RESULT_FORMATS, "json")
        graph_format = choose_format(values, accept, RDF_FORMATS, "turtle")
        if not isinstance(results_format, Format) and not isinstance(graph_format, Format):
            return None
        return QueryRequest(text=text, results_format=results_format.name if isinstance(results_format, Format) else None,
                            graph_format=graph_format.name if isinstance(graph_format, Format) else None,
                            default_graphs=default_graphs, named_graphs=named_graphs, max_rows=config.max_rows,
                            max_bytes=config.max_answer_bytes)

    @staticmethod
    def _body(environ: dict, most: int) -> bytes:
        """The request's body, left readable for the view; ValueError when it is too long (the view says 413)."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > most:
            raise ValueError(length)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        return body


def _content_type(kind: str, name: str) -> str:
    return get_content_type((RDF_FORMATS if kind == "graph" else RESULT_FORMATS)[name].media_type, "utf-8")


# What the view, the app's after_request (nosniff, compress, cors) add to every answer, in their order.
_ANSWER_HEADERS = (("Cache-Control", CACHE_CONTROL), ("Vary", "Accept, Accept-Encoding"),
                   ("X-Content-Type-Options", "nosniff"), ("Access-Control-Allow-Origin", "*"),
                   ("Access-Control-Expose-Headers", EXPOSED_HEADERS))
_GZIP_ANSWER_HEADERS = _ANSWER_HEADERS[:3] + (("Content-Encoding", "gzip"),) + _ANSWER_HEADERS[3:]
