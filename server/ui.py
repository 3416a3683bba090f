"""The query page: an editor, the example queries, results as a table; works with no internet access."""

from __future__ import annotations

from flask import Blueprint, Response

__all__ = ["bp", "query_page"]

bp = Blueprint("ui", __name__)


@bp.get("/")
@bp.get("/query")
def query_page() -> Response:
    return Response("<!doctype html><title>cmc-kg</title><p>Query page: to be written.</p>", mimetype="text/html")
