"""The cmc-kg SPARQL endpoint: one Flask application factory, the built graph injected."""

from __future__ import annotations

import html

import pyoxigraph as ox
from flask import Flask, Response, request

from cmc_kg.query import RESULT_FORMATS, QueryError, open_store, run_query
from cmc_kg.safety import QueryRefused, check_query
from cmc_kg.settings import Settings

__all__ = ["create_app"]

# Graph serialisations for CONSTRUCT and DESCRIBE.
GRAPH_FORMATS = {
    "turtle": ("text/turtle", ox.RdfFormat.TURTLE),
    "ntriples": ("application/n-triples", ox.RdfFormat.N_TRIPLES),
    "rdfxml": ("application/rdf+xml", ox.RdfFormat.RDF_XML),
}

_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cmc-kg SPARQL endpoint</title></head>
<body><h1>cmc-kg SPARQL endpoint</h1><form method="post" action="sparql">
<textarea name="query" rows="12" cols="90">{query}</textarea><br><button type="submit">Run</button></form></body></html>"""
_DEFAULT_QUERY = "SELECT ?class (COUNT(?s) AS ?n) WHERE { ?s a ?class } GROUP BY ?class ORDER BY DESC(?n) LIMIT 20"


def _negotiate(table: dict, default: str) -> tuple[str, object]:
    """Pick a serialisation by the `format` parameter, else by Accept; None if nothing fits."""
    by_type = {mime: key for key, (mime, _) in table.items()}
    wanted = request.values.get("format")
    if wanted:
        key = wanted if wanted in table else by_type.get(wanted)
        return (table[key] if key else None)
    accepted = request.accept_mimetypes
    if not accepted or accepted.best in ("*/*", None):
        return table[default]
    best = accepted.best_match(list(by_type) + ["*/*"])
    if best is None:
        return None
    return table[by_type.get(best, default)]


def create_app(settings: Settings | None = None, store: ox.Store | None = None) -> Flask:
    """Build the Flask app over a store (loaded from the build when not given)."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["STORE"] = store if store is not None else open_store(settings)

    @app.route("/sparql", methods=["GET", "POST"])
    def sparql():
        if request.method == "POST" and request.mimetype == "application/sparql-query":
            text = request.get_data(as_text=True)
        elif request.method == "POST" and request.mimetype not in ("application/x-www-form-urlencoded",
                                                                    "multipart/form-data"):
            return Response(f"unsupported media type {request.mimetype!r}\n", 415, mimetype="text/plain")
        else:
            text = request.values.get("query")
        if request.values.get("update") is not None:
            return Response("this endpoint is read-only: SPARQL updates are refused\n", 403, mimetype="text/plain")
        if not text:
            return Response(_FORM.format(query=html.escape(_DEFAULT_QUERY)), mimetype="text/html")
        try:
            check_query(text)
            result = run_query(app.config["STORE"], text)
        except QueryRefused as error:
            return Response(f"{error}\n", 403, mimetype="text/plain")
        except QueryError as error:
            return Response(f"malformed query: {error}\n", 400, mimetype="text/plain")
        if isinstance(result, ox.QueryTriples):
            chosen = _negotiate(GRAPH_FORMATS, "turtle")
        else:
            chosen = _negotiate(RESULT_FORMATS, "json")
        if chosen is None:
            return Response("none of the accepted media types can be produced\n", 406, mimetype="text/plain")
        mime, fmt = chosen
        if isinstance(result, ox.QueryBoolean):
            body = ox.QueryBoolean.serialize(result, format=fmt) if hasattr(result, "serialize") else None
        else:
            body = result.serialize(format=fmt)
        return Response(body, mimetype=mime)

    @app.get("/health")
    def health():
        return {"status": "ok", "triples": len(app.config["STORE"])}

    return app
