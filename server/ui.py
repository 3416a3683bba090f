"""The query page: an editor, the example queries, results as a table; works with no internet access.

Everything the page needs is served from here: the template (server/templates/query.html), the script
and the stylesheet (server/static/, on the application's /static route). The page's settings (the entity
namespace, the prefixes, the example queries) go to the script as one JSON blob, so no IRI is spelled in
the template or the script.

Clicking an example query loads it into the editor and runs it. A page opened with ``?query=`` (a
permalink), like /sparql?query=… opened in a browser, shows that query and runs it at once; without one the
editor holds the first example query.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, render_template, request, url_for

from cmc_kg.namespaces import ID
from cmc_kg.query import PREFIX_MAP, example_queries, internal_query

from .explore import Unavailable, run
from .state import State

__all__ = ["bp", "query_page"]

bp = Blueprint("ui", __name__)

# No request may leave the server: the page loads its own script, stylesheet and nothing else.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'self'")


def _without_header(text: str) -> str:
    """The query text without its leading `# title:` and `# description:` lines, which the list shows."""
    lines = text.splitlines()
    while lines and lines[0].startswith("#") and lines[0][1:].partition(":")[0].strip().lower() in (
            "title", "description"):
        lines.pop(0)
    return "\n".join(lines).strip() + "\n"


def entity_prefixes() -> list[dict[str, str]]:
    """Each prefix of the graph's own entities with its most described entity, for the "IRIs in this graph"
    help: a newcomer who writes org:cmc (W3C ORG's namespace) instead of kgorg:cmc gets no rows and no error."""
    kinds = sorted(((prefix, namespace) for prefix, namespace in PREFIX_MAP.items()
                    if namespace.startswith(str(ID)) and namespace != str(ID)), key=lambda item: item[0])
    try:
        rows = run("entity-examples").rows
    except Unavailable:
        rows = []
    help_rows = []
    for prefix, namespace in kinds:
        example = next((r for r in rows if r["entity"].startswith(namespace)
                        and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_/-]*", r["entity"][len(namespace):])), None)
        local = example["entity"][len(namespace):].replace("/", "\\/") if example else ""
        help_rows.append({"prefix": prefix, "namespace": namespace,
                          "example": f"{prefix}:{local}" if example else "",
                          "label": example.get("label", "") if example else "",
                          "path": "/id/" + example["entity"][len(str(ID)):] if example else ""})
    return help_rows


@bp.get("/")
@bp.get("/query")
def query_page_route() -> Response:
    return query_page(request.args.get("query"))


def query_page(given: str | None) -> Response:
    """The page, holding ``given`` and running it at once (a permalink, or a browser's /sparql?query=…)."""
    state = State.current()
    examples = [{"name": q.path.stem, "title": q.title, "description": q.description, "text": _without_header(q.text)}
                for q in example_queries(state.paths)]
    settings = {
        "endpoint": url_for("sparql.sparql"),
        "page": request.script_root + "/query",
        "entityBase": str(ID),
        "entityPages": request.script_root + "/id/",
        "prefixes": dict(sorted(PREFIX_MAP.items())),
        "examples": examples,
        "autorun": bool(given),
        "maxRows": state.config.max_rows,
    }
    text = given if given else (examples[0]["text"] if examples else internal_query("some-triples"))
    html = render_template("query.html", settings=settings, examples=examples, text=text,
                           prefixes=settings["prefixes"], entity_prefixes=entity_prefixes())
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.vary.add("Accept")
    return response
