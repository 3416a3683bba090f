"""How every page answers, in one place: plain-text errors, content negotiation, RDF of an rdflib graph, and
the HTTP around answers (CORS, gzip, ETags of compressed answers), which the app factory applies to all."""

from __future__ import annotations

import functools
import gzip
import re
from typing import Sequence

import pyoxigraph as ox
from flask import Response, request
from rdflib import Graph
from werkzeug.datastructures import MIMEAccept, MultiDict
from werkzeug.http import parse_accept_header

from cmc_kg.formats import RDF_FORMATS, RESULT_FORMATS, Format, by_name_or_type, write_triples

__all__ = ["error", "format_values", "format_values_in", "negotiate", "choose_format", "wants_html",
           "browser_wants_html", "prefers_html", "not_acceptable", "rdf_response", "revalidated", "compress",
           "accepts_gzip", "gzipped", "cors"]

# Parameters naming the answer's format: Virtuoso and Fuseki read `format`, Joseki `output`, rasqal `results`;
# SPARQLWrapper sends all three, some twice (a name and a media type).
FORMAT_PARAMETERS = ("format", "output", "results")
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Smaller answers fit in a packet or two: compressing them saves little and costs a round of CPU.
GZIP_MIN_BYTES = 1400
GZIP_SUFFIX = "-gzip"
# Headers a script on another origin may read (besides CORS's safelisted ones): the row cap's signal and the
# ETag to revalidate with, and Retry-After of a 429 or 503.
EXPOSED_HEADERS = "ETag, X-SPARQL-MaxRows, Retry-After"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def error(status: int, message: str) -> Response:
    """A plain-text error, the way SPARQL clients show it to their users."""
    return Response(message.rstrip() + "\n", status, mimetype="text/plain")


def format_values() -> list[str]:
    """Every value of the format parameters, in the order sent (read once per request: a query's answer is
    negotiated for results and for graphs, and for a browser)."""
    values = request.environ.get(_FORMAT_VALUES)
    if values is None:
        values = request.environ[_FORMAT_VALUES] = format_values_in(request.values)
    return list(values)


def format_values_in(params: MultiDict) -> tuple[str, ...]:
    """The values of the format parameters among ``params``, in the order sent, blank ones left out."""
    return tuple(value for name in FORMAT_PARAMETERS for value in params.getlist(name) if value.strip())


_FORMAT_VALUES = "cmc_kg.format_values"  # where format_values keeps them in the request's environ


def negotiate(table: dict[str, Format], default: str, extra: tuple[str, ...] = ()) -> Format | str | None:
    """The format to answer this request in: see :func:`choose_format`."""
    return choose_format(format_values(), request.headers.get("Accept", ""), table, default, extra)


def choose_format(values: Sequence[str], accept: str, table: dict[str, Format], default: str,
                  extra: tuple[str, ...] = ()) -> Format | str | None:
    """The format to answer in: the first format parameter value ``table`` knows, else the best Accept match
    (q-values, */*); None when nothing acceptable.

    A value ``table`` does not know is passed over, not refused: SPARQLWrapper sends values meant for other
    servers, and "csv" for a CONSTRUCT names no RDF format. Media types in ``extra`` (such as text/html) are
    offered too and returned as strings when they win.
    """
    for value in values:
        known = by_name_or_type(value, table)
        if known is not None:
            return known
    offered = tuple(extra) + (table[default].media_type,) + tuple(t for f in table.values() for t in f.media_types)
    best = _by_accept(_best_match, accept, offered)
    if best is _NO_ACCEPT:
        return table[default]
    if best is None:
        return None
    return best if best in extra else by_name_or_type(best, table)


_NO_ACCEPT = object()  # what _best_match says for a missing or empty Accept header
# Clients send the same few Accept headers over and over, and matching one costs more than a trivial query
# (Werkzeug normalises every media type on every comparison): the answers are kept per header, for headers
# up to this length (a browser's is about 150 characters), so that the cache stays small whatever is sent.
_CACHED_ACCEPT_CHARS = 512


def _by_accept(function, accept: str, *args):
    """``function(accept, *args)``, from its cache when the header is short enough to be kept."""
    return (function if len(accept) <= _CACHED_ACCEPT_CHARS else function.__wrapped__)(accept, *args)


@functools.lru_cache(maxsize=512)
def _best_match(accept: str, offered: tuple[str, ...]) -> str | object | None:
    """The offered media type the Accept header prefers (_NO_ACCEPT when it has none); None: none acceptable."""
    parsed = parse_accept_header(accept, MIMEAccept)
    return parsed.best_match(offered) if parsed else _NO_ACCEPT


@functools.lru_cache(maxsize=512)
def _html_preferred(accept: str) -> bool:
    """Whether the Accept header names HTML above every format the server writes (see browser_wants_html)."""
    parsed = parse_accept_header(accept, MIMEAccept)
    html = max((quality for value, quality in parsed if value.lower() in HTML_TYPES), default=0)
    others = max(parsed.quality(t) for table in (RESULT_FORMATS, RDF_FORMATS)
                 for f in table.values() for t in f.media_types)
    return html > others


def wants_html() -> bool | None:
    """For a page with an HTML and an RDF form: True for HTML, False for RDF, None when nothing acceptable."""
    fmt = negotiate(RDF_FORMATS, "turtle", extra=("text/html",))
    return None if fmt is None else fmt == "text/html"


def browser_wants_html() -> bool:
    """Whether this request for a query's answer comes from a browser: see :func:`prefers_html`."""
    return prefers_html(format_values(), request.headers.get("Accept", ""))


def prefers_html(values: Sequence[str], accept: str) -> bool:
    """Whether a request for a query's answer comes from a browser: `format=html`, or no format parameter this
    server knows and an Accept header that names HTML above every format the server writes (a browser's
    ``text/html,…,application/xml;q=0.9,*/*;q=0.8``). A wildcard is no request for HTML, so curl and API
    clients keep their answers."""
    values = [value.strip().lower() for value in values]
    if any(by_name_or_type(value, RESULT_FORMATS) or by_name_or_type(value, RDF_FORMATS) for value in values):
        return False
    if "html" in values or any(value in HTML_TYPES for value in values):
        return True
    return _by_accept(_html_preferred, accept)


def not_acceptable() -> Response:
    """406 for a page offered as HTML or RDF."""
    response = error(406, "none of the accepted media types can be produced: text/html, "
                          + ", ".join(f.media_type for f in RDF_FORMATS.values()))
    response.vary.add("Accept")
    return response


def rdf_response(graph: Graph) -> Response:
    """An rdflib graph in the negotiated RDF format (406 when none is acceptable), its triples sorted by
    subject so that Turtle groups them."""
    fmt = negotiate(RDF_FORMATS, "turtle")
    if not isinstance(fmt, Format):  # None: no RDF format is acceptable (no other media type was offered)
        return not_acceptable()
    data = graph.serialize(format="nt", encoding="utf-8")
    triples = sorted((q.triple for q in ox.parse(data, format=ox.RdfFormat.N_TRIPLES)),
                     key=lambda t: (isinstance(t.subject, ox.BlankNode), str(t.subject), str(t.predicate), str(t.object)))
    prefixes = {p: str(ns) for p, ns in graph.namespaces()}
    response = Response(write_triples(triples, fmt, prefixes), mimetype=fmt.media_type)
    response.vary.add("Accept")
    return response


def _accepts_gzip() -> bool:
    return accepts_gzip(request.headers.get("Accept-Encoding", ""))


@functools.lru_cache(maxsize=256)
def _gzip_quality(accept_encoding: str) -> float:
    return parse_accept_header(accept_encoding)["gzip"]


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (q > 0, or through *)."""
    return (_gzip_quality(accept_encoding) if len(accept_encoding) <= _CACHED_ACCEPT_CHARS
            else _gzip_quality.__wrapped__(accept_encoding)) > 0


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=5, mtime=0)


def revalidated(etag: str) -> Response | None:
    """304 when the client holds the answer with this ETag, plain or compressed by :func:`compress` (a gzip
    copy only while the client still accepts gzip); None when it must be sent."""
    if "If-None-Match" not in request.headers:  # most requests: no need to read Accept-Encoding
        return None
    held = [etag] + ([etag + GZIP_SUFFIX] if _accepts_gzip() else [])
    match = next((tag for tag in held if tag in request.if_none_match), None)
    if match is None:
        return None
    response = Response(status=304)
    response.set_etag(match)
    response.vary.add("Accept")
    response.vary.add("Accept-Encoding")
    return response


def compress(response: Response) -> Response:
    """gzip a large answer when the client accepts it. The compressed answer is another representation, so
    its ETag gets a suffix (a cache must not answer a plain request with it, nor the reverse), and a
    conditional request for it gets 304 here."""
    if response.status_code != 200 or response.direct_passthrough or response.is_streamed \
            or "Content-Encoding" in response.headers or request.method not in ("GET", "HEAD", "POST"):
        return response
    response.vary.add("Accept-Encoding")
    body = response.get_data()
    if len(body) < GZIP_MIN_BYTES or not _accepts_gzip():
        return response
    response.set_data(gzipped(body))
    response.headers["Content-Encoding"] = "gzip"
    etag, weak = response.get_etag()
    if etag:
        response.set_etag(etag + GZIP_SUFFIX, bool(weak))
        if etag + GZIP_SUFFIX in request.if_none_match:
            response.make_conditional(request)  # makes it a 304 in place
    return response


def cors(response: Response) -> Response:
    """Any origin may read answers and their row cap (as on Wikidata's and DBpedia's endpoints); credentials
    are never sent. A preflight gets the headers it asks for, as other public endpoints allow."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.method == "OPTIONS":
        asked = request.headers.get("Access-Control-Request-Headers", "")
        names = [name.strip() for name in asked.split(",") if _HEADER_NAME.fullmatch(name.strip())]
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ", ".join(names or ["Content-Type", "Accept"])
        response.headers["Access-Control-Max-Age"] = "86400"
        response.vary.add("Access-Control-Request-Headers")
    return response
