"""Entity, ontology and graph pages, the VoID description and the dumps: every IRI the graph mints dereferences.

* ``/id/...`` (an entity): an HTML page for browsers (labels, types, every fact with the sources that
  assert it, incoming links, a state's treaty actions in date order), or for RDF clients the entity's
  asserted description (every asserted triple with the entity as subject) in the negotiated format.
* ``/ontology`` (and every ``ontology#Term``, and the version IRI): HTML documentation generated from the
  ontology file by pyLODE, each term anchored by its local name; Turtle, RDF/XML and the rest for tools.
* ``/graph/<slug>`` (a named graph): a summary page, or the graph's triples.
* ``/.well-known/void``: the VoID description of the dataset, its endpoint, named graphs and dumps.
* ``/dumps/<name>``: the build's N-Quads dump (and a gzipped copy), each with a ``.sha256`` sibling; the
  checksum is also in the VoID (SPDX checksum vocabulary, as DCAT 3 does) and in a ``Repr-Digest`` header.
  When the build is a release (`cmc-kg release`), /dumps/ names it with its sources' as-at dates and serves its
  release.json and changes (CHANGES.md, changes.ttl), which entity pages show as "changed since".

Routes are derived from the namespaces (an IRI ``<base>/id/x`` is served at ``/id/x``), so no project IRI
is spelled here. Every answer varies with Accept and carries an ETag derived from the build.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import logging
import re
import threading
import urllib.parse
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, Response, render_template, render_template_string, request, send_file
from markupsafe import escape
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import DCAT

from cmc_kg.contract import QueryRequest
from cmc_kg.formats import FILE_FORMATS, RDF_FORMATS
from cmc_kg.namespaces import (CMC, DCTERMS, GRAPH, ID, INFERRED_GRAPH, ONTOLOGY, ONTOLOGY_GRAPH, ONTOLOGY_VERSION,
                               OWL, PROV, RDF, RDFS, SKOS, SOURCES_GRAPH, VOID, XSD, bind_prefixes)
from cmc_kg.query import internal_query, iri_ref, set_values, writable_iri
from cmc_kg.release import CHANGES_RDF, RELEASE_FILES, read_release
from cmc_kg.terms import compact

from .responses import error, negotiate, not_acceptable, rdf_response, wants_html
from .state import State

__all__ = ["bp", "local_path", "published_dumps", "ontology_html"]

bp = Blueprint("pages", __name__)
log = logging.getLogger(__name__)

# The persistent base every project IRI shares; a project IRI <BASE + rest> is served at /rest.
BASE = str(ONTOLOGY).rsplit("/", 1)[0] + "/"
TERMS = str(CMC._NS)


def local_path(iri: str) -> str:
    """The server path of a project IRI (``<base>/id/x`` -> ``/id/x``, ``ontology#T`` -> ``/ontology#T``)."""
    return "/" + iri[len(BASE):]


ID_PATH, GRAPH_PATH = local_path(str(ID)), local_path(str(GRAPH))
ONTOLOGY_PATH, VERSION_PATH = local_path(str(ONTOLOGY)), local_path(str(ONTOLOGY_VERSION))

# The entity page shows one incoming link fewer than its query's LIMIT, and says when there are more.
INCOMING_CAP = int(re.findall(r"LIMIT (\d+)", internal_query("entity-incoming"))[-1]) - 1
DUMP_MEDIA_TYPES = {f.extension: f.media_type for f in (RDF_FORMATS["nquads"], FILE_FORMATS["gzip"])}
SPDX = "http://spdx.org/rdf/terms#"


# --------------------------------------------------------------------------------------------------
# Terms for templates
# --------------------------------------------------------------------------------------------------

def href(iri: str) -> str:
    """Where a page links an IRI: project IRIs to this server's pages, others to themselves."""
    if iri.startswith(TERMS):
        return ONTOLOGY_PATH + "#" + iri[len(TERMS):]
    if iri.startswith(BASE):
        return urllib.parse.quote(local_path(iri), safe="/:@!$&'()*+,;=-._~%#")
    return iri


def _label_of(candidates: list[tuple[int, dict]]) -> str | None:
    """The best label among (property rank, binding) pairs: English, then untagged, then any; by property rank."""
    def rank(item):
        prop_rank, binding = item
        lang = binding.get("xml:lang", "")
        return (0 if lang.lower().startswith("en") else 1 if not lang else 2, prop_rank, binding["value"])
    return min(candidates, key=rank)[1]["value"] if candidates else None


def about(name: str, variable: str, iri: str) -> str:
    """The internal query ``name`` about one IRI: its VALUES block over ``variable`` holds just that IRI."""
    return set_values(internal_query(name), (variable,), [(iri_ref(iri),)])


def fetch_labels(state: State, iris: set[str]) -> dict[str, str]:
    """Labels (rdfs:label, skos:prefLabel, schema:name, dcterms:title) of IRIs, 500 IRIs a query."""
    found: dict[str, list] = defaultdict(list)
    asked = sorted(i for i in iris if writable_iri(i))
    for start in range(0, len(asked), 500):
        text = set_values(internal_query("labels"), ("x",), [(iri_ref(i),) for i in asked[start:start + 500]])
        for row in state.select(text):
            found[row["x"]["value"]].append((int(row["rank"]["value"]), row["l"]))
    return {iri: _label_of(candidates) for iri, candidates in found.items()}  # type: ignore[misc]  # found: labelled


def term(binding: dict, labels: dict[str, str]) -> dict:
    """A SPARQL JSON binding as the templates show it: IRIs with label and link, literals with lang/datatype."""
    if binding["type"] == "uri":
        iri = binding["value"]
        return {"kind": "iri", "iri": iri, "href": href(iri), "label": labels.get(iri), "compact": compact(iri),
                "external": not iri.startswith(BASE)}
    if binding["type"] == "bnode":
        return {"kind": "bnode", "value": "_:" + binding["value"]}
    datatype = binding.get("datatype")
    return {"kind": "literal", "value": binding["value"], "lang": binding.get("xml:lang"),
            "datatype": compact(datatype) if datatype else None}


def iri_term(iri: str, labels: dict[str, str]) -> dict:
    return term({"type": "uri", "value": iri}, labels)


def _sort_key(t: dict) -> tuple:
    return ((t.get("label") or t.get("compact") or t.get("value") or "").lower(), t.get("iri") or t.get("value", ""))


def query_link(text: str) -> str:
    """A link to the query page with a query filled in, without the comment lines that open its file."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "/query?" + urllib.parse.urlencode({"query": "".join(lines).rstrip("\n")})


# --------------------------------------------------------------------------------------------------
# Sources and graphs
# --------------------------------------------------------------------------------------------------

_SPECIAL_GRAPHS = {str(INFERRED_GRAPH): ("inferred", "entailed by OWL 2 RL reasoning over the asserted graphs"),
                   str(ONTOLOGY_GRAPH): ("ontology", "the cmc-kg ontology"),
                   str(SOURCES_GRAPH): ("source registry", "the registry of sources")}


def graph_catalogue(state: State) -> dict[str, dict]:
    """Every named graph: triple count, source IRI, key and title (from the registry); read once per build.
    Callers must not change what it returns."""
    return state.per_build("graph catalogue", lambda: _read_graph_catalogue(state))


def _read_graph_catalogue(state: State) -> dict[str, dict]:
    graphs: dict[str, dict] = {}
    for row in state.select(internal_query("graph-sizes")):
        g = row["g"]["value"]
        key, title = _SPECIAL_GRAPHS.get(g, (g.rsplit("/", 1)[-1], None))
        graphs[g] = {"iri": g, "href": href(g), "triples": int(row["n"]["value"]), "key": key, "title": title,
                     "source": None, "slug": g[len(str(GRAPH)):] if g.startswith(str(GRAPH)) else None}
    for row in state.select(internal_query("graph-sources")):
        g = row["g"]["value"]
        if g not in graphs or graphs[g]["source"]:
            continue
        info = graphs[g]
        info["source"] = row["src"]["value"]
        info["source_href"] = href(info["source"])
        if "key" in row:
            info["key"] = row["key"]["value"]
        if "title" in row or "label" in row:
            info["title"] = (row.get("title") or row["label"])["value"]
    return graphs


# --------------------------------------------------------------------------------------------------
# Negotiation helpers
# --------------------------------------------------------------------------------------------------

def _finish(response: Response, *parts: str) -> Response:
    """Vary, an ETag of the build and what was asked, and short public caching; 304 when it matches."""
    state = State.current()
    response.vary.add("Accept")
    if response.status_code == 200:
        response.set_etag(hashlib.sha1(repr((state.build_id, request.path, *parts)).encode("utf-8")).hexdigest())
        response.headers["Cache-Control"] = "public, max-age=60"
        response.make_conditional(request)
    return response


_NOT_FOUND_PAGE = """{% extends "base.html" %}{% block title %}Not found{% endblock %}
{% block content %}<h1>Not found</h1><p>No triple of the graph mentions <code>{{ iri }}</code>.</p>
<p><a href="/query">Query the graph</a></p>{% endblock %}"""


def _not_found(iri: str, html: bool | None) -> Response:
    if html:
        response = Response(render_template_string(_NOT_FOUND_PAGE, iri=iri), 404, mimetype="text/html")
    else:
        response = error(404, f"no triple of the graph mentions <{iri}>")
    response.vary.add("Accept")
    return response


def _construct(text: str, fmt_name: str, triples_hint: int = 0) -> Response:
    """A CONSTRUCT of the server itself, answered in one RDF format without a row cap."""
    state = State.current()
    answer, _ = state.run(QueryRequest(text, results_format=None, graph_format=fmt_name,
                                       max_rows=max(state.config.max_rows, triples_hint + 1, 1_000_000)))
    return Response(answer.body, 200, mimetype=RDF_FORMATS[fmt_name].media_type)


def _rdf_format():
    return negotiate(RDF_FORMATS, "turtle")


# --------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------

def _exists(state: State, iri: str) -> bool:
    return bool(state.select(about("entity-exists", "entity", iri)))


def _entity_iri(rest: str) -> str | None:
    """The IRI a path names: as decoded, or percent-encoded as it came, whichever the graph uses."""
    state = State.current()
    candidates = [str(ID) + rest, str(ID) + urllib.parse.quote(rest, safe="/:@!$&'()*+,;=-._~")]
    for iri in dict.fromkeys(candidates):
        if writable_iri(iri) and _exists(state, iri):
            return iri
    return None


@bp.route(ID_PATH + "<path:rest>", methods=["GET", "HEAD"])
def entity(rest: str) -> Response:
    html = wants_html()
    iri = _entity_iri(rest)
    if iri is None:
        return _not_found(str(ID) + rest, html)
    if html is None:
        return not_acceptable()
    if not html:
        fmt = _rdf_format()
        return _finish(_construct(about("entity-description", "entity", iri), fmt.name), fmt.name)
    page = entity_page(iri)
    # A release made after the build adds "changed since" to the page: the ETag changes with it.
    return _finish(Response(render_template("entity.html", **page), mimetype="text/html"), "html",
                   (page["release"] or {}).get("version", ""))


def entity_page(iri: str) -> dict:
    """Everything the entity template shows."""
    state = State.current()
    graphs = graph_catalogue(state)
    facts = state.select(about("entity-facts", "entity", iri))
    incoming = state.select(about("entity-incoming", "entity", iri))
    types = {r["o"]["value"] for r in facts if r["p"]["value"] == str(RDF.type) and r["o"]["type"] == "uri"}
    actions_query = about("entity-actions", "state", iri)
    actions = state.select(actions_query) if str(CMC.Country) in types else []

    wanted = {iri} | {r["p"]["value"] for r in facts} | {r["o"]["value"] for r in facts if r["o"]["type"] == "uri"}
    wanted |= {r[v]["value"] for r in incoming for v in ("s", "p")}
    wanted |= {r[v]["value"] for r in actions for v in ("action", "treaty", "kind")}
    labels = fetch_labels(state, wanted)

    used: dict[str, dict] = {}

    def sources(graph_iris: set[str]) -> list[dict]:
        """The graphs asserting a fact; "inferred" only when no asserted graph holds it."""
        asserted = sorted(g for g in graph_iris if g != str(INFERRED_GRAPH))
        chosen = [graphs.get(g) or {"iri": g, "href": href(g), "key": compact(g), "title": None}
                  for g in (asserted or sorted(graph_iris))]
        used.update((s["iri"], s) for s in chosen)
        return chosen

    # Facts grouped by property, each value once with the graphs asserting it.
    by_property: dict[str, dict] = {}
    for row in facts:
        p, o = row["p"]["value"], row["o"]
        values = by_property.setdefault(p, {})
        key = (o["type"], o["value"], o.get("xml:lang"), o.get("datatype"))
        values.setdefault(key, (o, set()))[1].add(row["g"]["value"])
    first = {str(RDF.type): 0, str(RDFS.label): 1}
    properties = []
    for p in sorted(by_property, key=lambda p: (first.get(p, 2), (labels.get(p) or compact(p)).lower())):
        shown = [dict(term(o, labels), sources=sources(gs), inferred_only=gs == {str(INFERRED_GRAPH)})
                 for o, gs in by_property[p].values()]
        shown.sort(key=lambda v: (v["inferred_only"], _sort_key(v)))
        properties.append({"property": iri_term(p, labels), "values": shown})

    asserted_types = {r["o"]["value"] for r in facts if r["p"]["value"] == str(RDF.type)
                      and r["o"]["type"] == "uri" and r["g"]["value"] != str(INFERRED_GRAPH)}
    type_terms = sorted((iri_term(t, labels) for t in asserted_types), key=_sort_key)
    inferred_types = sorted((iri_term(t, labels) for t in types - asserted_types), key=_sort_key)

    referenced: dict[str, list] = {}
    for row in incoming[:INCOMING_CAP]:
        referenced.setdefault(row["p"]["value"], []).append(iri_term(row["s"]["value"], labels))
    referenced_by = [{"property": iri_term(p, labels), "subjects": sorted(subjects, key=_sort_key)}
                     for p, subjects in sorted(referenced.items(), key=lambda i: (labels.get(i[0]) or compact(i[0])))]

    grouped: dict[str, dict] = {}
    for row in actions:
        a = row["action"]["value"]
        entry = grouped.setdefault(a, {"action": iri_term(a, labels), "date": row["date"]["value"],
                                       "treaty": iri_term(row["treaty"]["value"], labels), "kinds": {}, "graphs": set()})
        entry["kinds"].setdefault(row["kind"]["value"], iri_term(row["kind"]["value"], labels))
        entry["graphs"].add(row["g"]["value"])
    action_rows = [dict(e, kinds=sorted(e["kinds"].values(), key=_sort_key), sources=sources(e["graphs"]))
                   for e in grouped.values()]
    action_rows.sort(key=lambda e: (e["date"], _sort_key(e["treaty"]), e["action"]["iri"]))

    label = labels.get(iri)
    return {
        "iri": iri, "label": label or compact(iri), "compact": compact(iri), "types": type_terms,
        "inferred_types": inferred_types, "properties": properties, "referenced_by": referenced_by,
        "incoming_capped": len(incoming) > INCOMING_CAP, "incoming_cap": INCOMING_CAP,
        "is_country": str(CMC.Country) in types, "actions": action_rows,
        "describe_link": query_link(about("entity-describe", "entity", iri)),
        "incoming_link": query_link(about("entity-incoming-all", "entity", iri)),
        "actions_link": query_link(actions_query),
        "formats": _format_links(),
        **release_changes(state.paths.dump_file, iri),
        "sources": sorted(used.values(), key=lambda s: (s["iri"] == str(INFERRED_GRAPH), s["key"].lower())),
    }


def _format_links() -> list[dict]:
    shown = ("turtle", "jsonld", "ntriples", "rdfxml")
    return [{"name": RDF_FORMATS[n].media_type, "href": f"{request.path}?format={n}"} for n in shown]


# --------------------------------------------------------------------------------------------------
# Named graphs
# --------------------------------------------------------------------------------------------------

@bp.route(GRAPH_PATH + "<slug>", methods=["GET", "HEAD"])
def named_graph(slug: str) -> Response:
    state = State.current()
    iri = str(GRAPH) + slug
    html = wants_html()
    info = graph_catalogue(state).get(iri)
    if info is None:
        return _not_found(iri, html)
    if html is None:
        return not_acceptable()
    if not html:
        fmt = _rdf_format()
        return _finish(_construct(about("graph-triples", "graph", iri), fmt.name, info["triples"]), fmt.name)
    classes = state.select(about("graph-classes", "graph", iri))
    source_facts = []
    labels = {}
    if info.get("source"):
        rows = state.select(about("source-facts", "source", info["source"]))
        labels = fetch_labels(state, {r["p"]["value"] for r in rows} | {info["source"]}
                              | {r["o"]["value"] for r in rows if r["o"]["type"] == "uri"}
                              | {r["class"]["value"] for r in classes})
        grouped: dict[str, list] = {}
        for row in rows:
            grouped.setdefault(row["p"]["value"], []).append(term(row["o"], labels))
        source_facts = [{"property": iri_term(p, labels), "values": vs} for p, vs in grouped.items()]
    else:
        labels = fetch_labels(state, {r["class"]["value"] for r in classes})
    page = {
        "iri": iri, "info": info, "source_facts": source_facts,
        "source": iri_term(info["source"], labels) if info.get("source") else None,
        "classes": [{"class": iri_term(r["class"]["value"], labels), "count": int(r["n"]["value"])} for r in classes],
        "query_link": query_link(about("graph-triples-table", "graph", iri)),
        "formats": _format_links(),
    }
    return _finish(Response(render_template("graph.html", **page), mimetype="text/html"), "html")


# --------------------------------------------------------------------------------------------------
# The ontology
# --------------------------------------------------------------------------------------------------

_ontology_lock = threading.Lock()
_ontology_cache: dict[tuple, str] = {}


def _ontology_terms(graph: Graph) -> list[URIRef]:
    return sorted({s for s in graph.subjects() if isinstance(s, URIRef) and str(s).startswith(TERMS)})


@contextlib.contextmanager
def _logging_untouched():
    """Undo what pyLODE does to the root logger: its import calls basicConfig(level=DEBUG), and its
    module-level ``logging.info`` calls add a handler when none is set."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.addHandler(logging.NullHandler())  # basicConfig does nothing when the root logger has a handler
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def _pylode_html(ontology_file: Path, terms: list[URIRef]) -> str:
    """pyLODE's OntPub page, each cmc term's fragment id set to its local name."""
    # pyLODE takes every skos:ConceptScheme for the ontology itself (merging their titles into the page's
    # title and metadata), so it is shown the graph without those type triples; the schemes are then
    # documented among the other terms.
    shown = Graph().parse(ontology_file, format="turtle")  # a fresh copy keeps the file's order of terms
    shown.remove((None, RDF.type, SKOS.ConceptScheme))
    with _logging_untouched():
        from pylode.profiles.ontpub import OntPub

        doc = OntPub(shown, sort_subjects=True)
        doc.fids.update({str(t): str(t)[len(TERMS):] for t in terms})
        html = str(doc.make_html())
    # pyLODE lists a term once per kind (cmc:actor is an object and a functional property) with the same
    # id; later copies get a suffix so that ids stay unique and the term IRI lands on the first.
    seen: dict[str, int] = defaultdict(int)

    def unique(match: re.Match) -> str:
        seen[match[1]] += 1
        return match[0] if seen[match[1]] == 1 else f'id="{match[1]}-{seen[match[1]]}"'

    return re.sub(r'\bid="([^"]*)"', unique, html)


def ontology_html(ontology_file: Path) -> str:
    """The ontology's HTML documentation, generated once per version of the file.

    pyLODE writes it; its fragment ids are made from labels, so each cmc term's id is set to its local name
    first, which makes every term IRI (``ontology#Term``) land on its entry. Terms pyLODE leaves out (it
    documents classes, properties and a few more) get a plain entry of their own. If pyLODE cannot be
    loaded or fails, the whole page is written from the ontology graph here.
    """
    stat = ontology_file.stat()
    key = (str(ontology_file), stat.st_mtime_ns, stat.st_size)
    with _ontology_lock:
        if key in _ontology_cache:
            return _ontology_cache[key]
        graph = Graph().parse(ontology_file, format="turtle")
        terms = _ontology_terms(graph)
        try:
            html = _pylode_html(ontology_file, terms)
        except Exception as failure:  # pyLODE is a convenience: the documentation must not depend on it
            log.warning("pyLODE failed (%s); writing the ontology documentation without it", failure)
            html = _fallback_document(graph, terms)
        missing = [t for t in terms if f'id="{t[len(TERMS):]}"' not in html]
        if missing:
            extra = ('<div class="section" id="other-terms"><h2>Other terms</h2>'
                     + "".join(_term_entry(graph, t) for t in missing) + "</div>")
            html = html.replace("</body>", extra + "</body>", 1) if "</body>" in html else html + extra
        _ontology_cache.clear()
        _ontology_cache[key] = html
        return html


def _text(graph: Graph, subject, predicate) -> str:
    values = sorted(graph.objects(subject, predicate), key=lambda v: (getattr(v, "language", None) not in ("en", None), str(v)))
    return str(values[0]) if values else ""


def _link(iri) -> str:
    if isinstance(iri, BNode):
        return "(anonymous)"
    target = "#" + str(iri)[len(TERMS):] if str(iri).startswith(TERMS) else str(iri)
    return f'<a href="{escape(target)}"><code>{escape(compact(str(iri)))}</code></a>'


def _term_entry(graph: Graph, t: URIRef) -> str:
    """One term as HTML: label, IRI, types, comment, super-classes/properties, domain, range."""
    rows = [("IRI", f"<code>{escape(str(t))}</code>")]
    for title, predicate in (("Types", RDF.type), ("Super-classes", RDFS.subClassOf),
                             ("Super-properties", RDFS.subPropertyOf), ("Domain", RDFS.domain),
                             ("Range", RDFS.range), ("In scheme", SKOS.inScheme)):
        objects = sorted(graph.objects(t, predicate), key=str)
        if objects:
            rows.append((title, ", ".join(_link(o) for o in objects)))
    for title, predicate in (("Description", RDFS.comment), ("Definition", SKOS.definition)):
        if _text(graph, t, predicate):
            rows.append((title, str(escape(_text(graph, t, predicate)))))
    local = str(t)[len(TERMS):]
    label = _text(graph, t, RDFS.label) or _text(graph, t, SKOS.prefLabel) or local
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="entity" id="{escape(local)}"><h3>{escape(label)}</h3><table>{body}</table></div>'


def _fallback_document(graph: Graph, terms: list[URIRef]) -> str:
    kinds = (("Classes", {OWL.Class, RDFS.Class}),
             ("Object properties", {OWL.ObjectProperty}), ("Datatype properties", {OWL.DatatypeProperty}),
             ("Annotation properties", {OWL.AnnotationProperty}), ("Other properties", {RDF.Property}))
    placed: set = set()
    sections = []
    for title, classes in kinds:
        members = [t for t in terms if t not in placed and set(graph.objects(t, RDF.type)) & classes]
        placed.update(members)
        if members:
            sections.append(f"<h2>{escape(title)}</h2>" + "".join(_term_entry(graph, t) for t in members))
    rest = [t for t in terms if t not in placed]
    if rest:
        sections.append("<h2>Named individuals and concepts</h2>" + "".join(_term_entry(graph, t) for t in rest))
    title = _text(graph, ONTOLOGY, DCTERMS.title) or "Ontology"
    description = _text(graph, ONTOLOGY, DCTERMS.description)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="/static/style.css"><link rel="stylesheet" href="/static/pages.css"></head>'
            f'<body><main class="ontology"><h1>{escape(title)}</h1><p><code>{escape(str(ONTOLOGY))}</code></p>'
            f"<p>{escape(description)}</p>{''.join(sections)}</main></body></html>")


@bp.route(ONTOLOGY_PATH, methods=["GET", "HEAD"])
@bp.route(ONTOLOGY_PATH + "/", methods=["GET", "HEAD"])
@bp.route(VERSION_PATH, methods=["GET", "HEAD"])
def ontology() -> Response:
    paths = State.current().paths
    html = wants_html()
    if html is None:
        return not_acceptable()
    if html:
        # pyLODE writes the page; the site's navigation goes at the top of its body, as on every other page.
        nav = '<header class="site" style="padding:0.5rem 1rem">' + render_template("_site_nav.html") + "</header>"
        page = re.sub(r"<body[^>]*>", lambda body: body.group() + nav, ontology_html(paths.ontology_file), count=1)
        return _finish(Response(page, mimetype="text/html"), "html", str(paths.ontology_file.stat().st_mtime_ns))
    graph = Graph().parse(paths.ontology_file, format="turtle")
    return _finish(rdf_response(graph), _rdf_format().name, str(paths.ontology_file.stat().st_mtime_ns))


# --------------------------------------------------------------------------------------------------
# Dumps and VoID
# --------------------------------------------------------------------------------------------------

_dump_lock = threading.Lock()
_dump_cache: dict[tuple, dict] = {}


def published_dumps(dump_file: Path) -> dict[str, dict]:
    """The dumps this server publishes, by file name: the N-Quads dump and a gzipped copy (made once, in
    memory, with a fixed timestamp so its checksum is stable), each with size, media type and SHA-256."""
    stat = dump_file.stat()
    key = (str(dump_file), stat.st_mtime_ns, stat.st_size)
    with _dump_lock:
        if key not in _dump_cache:
            data = dump_file.read_bytes()
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            _dump_cache.clear()
            _dump_cache[key] = {
                dump_file.name: {"path": dump_file, "data": None, "bytes": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), "media_type": "application/n-quads",
                                 "format": "http://www.w3.org/ns/formats/N-Quads", "modified": stat.st_mtime},
                dump_file.name + ".gz": {"path": None, "data": packed, "bytes": len(packed),
                                         "sha256": hashlib.sha256(packed).hexdigest(), "media_type": "application/gzip",
                                         "format": "http://www.w3.org/ns/formats/N-Quads", "modified": stat.st_mtime},
            }
        return _dump_cache[key]


_RELEASE_MEDIA_TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8", ".ttl": "text/turtle"}


def current_release(dump_file: Path) -> dict | None:
    """The release record (`cmc-kg release`) beside the dump, if it is this dump's: a build made since is unreleased."""
    release = read_release(dump_file.parent)
    dumped = published_dumps(dump_file)[dump_file.name]["sha256"]
    return release if release and release.get("files", {}).get(dump_file.name, {}).get("sha256") == dumped else None


def release_files(dump_file: Path) -> dict[str, dict]:
    """The current release's files beside the dump (release.json, CHANGES.md, changes.ttl), as published_dumps
    describes the dumps."""
    if current_release(dump_file) is None:
        return {}
    found = {}
    for name in RELEASE_FILES:
        path = dump_file.parent / name
        if path.exists():
            data = path.read_bytes()
            found[name] = {"path": path, "data": None, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "media_type": _RELEASE_MEDIA_TYPES[path.suffix], "modified": path.stat().st_mtime}
    return found


_changes_lock = threading.Lock()
_changes_cache: dict[tuple, dict[str, list[dict]]] = {}


def changes_about(dump_file: Path, iri: str) -> list[dict]:
    """The current release's changes (changes.ttl) whose subject is the entity or that involve it."""
    path = dump_file.parent / CHANGES_RDF
    if not path.exists() or current_release(dump_file) is None:
        return []
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _changes_lock:
        if key not in _changes_cache:
            graph = Graph().parse(path, format="turtle")
            index: dict[str, list[dict]] = defaultdict(list)
            for change in sorted(graph.subjects(RDF.type, CMC.Change), key=lambda c: (len(str(c)), str(c))):
                entry = {"text": str(graph.value(change, RDFS.label)),
                         "kind": str(graph.value(change, CMC.changeKind)).rsplit("#", 1)[-1]}
                for about in {graph.value(change, DCTERMS.subject), *graph.objects(change, DCTERMS.references)}:
                    index[str(about)].append(entry)
            _changes_cache.clear()
            _changes_cache[key] = index
        return _changes_cache[key].get(iri, [])


def release_changes(dump_file: Path, iri: str) -> dict:
    """The current release and its changes that involve ``iri``, for a page's "changed since" section."""
    if not dump_file.exists():
        return {"release": None, "changes": []}
    return {"release": current_release(dump_file), "changes": changes_about(dump_file, iri)}


@bp.route("/dumps/", methods=["GET", "HEAD"])
def dumps_index() -> Response:
    """The dumps with their sizes and checksums, as VoID describes them, and the release the build is."""
    paths = State.current().paths
    if not paths.dump_file.exists():
        return error(404, "this server has no build dump")
    return Response(render_template("dumps.html", dumps=published_dumps(paths.dump_file),
                                    release=current_release(paths.dump_file),
                                    release_files=release_files(paths.dump_file)), mimetype="text/html")


@bp.route("/context.jsonld", methods=["GET", "HEAD"])
def jsonld_context() -> Response:
    """The JSON-LD context that JSON-LD exports and answers are compacted with (the README points here)."""
    from cmc_kg.export import JSONLD_CONTEXT

    response = Response(json.dumps(JSONLD_CONTEXT, indent=2) + "\n", mimetype="application/ld+json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.route("/dumps/<name>", methods=["GET", "HEAD"])
def dump(name: str) -> Response:
    paths = State.current().paths
    if not paths.dump_file.exists():
        return error(404, "this server has no build dump")
    dumps = {**published_dumps(paths.dump_file), **release_files(paths.dump_file)}
    if name.endswith(".sha256") and name[:-len(".sha256")] in dumps:
        target = name[:-len(".sha256")]
        response = Response(f"{dumps[target]['sha256']}  {target}\n", mimetype="text/plain")
        response.set_etag(dumps[target]["sha256"] + ".sha256")
        return response.make_conditional(request)  # type: ignore[return-value]
    if name not in dumps:
        return error(404, f"no dump {name!r}; published: " + ", ".join(dumps))
    info = dumps[name]
    source = info["path"] if info["path"] is not None else io.BytesIO(info["data"])
    response = send_file(source, mimetype=info["media_type"], as_attachment=False, download_name=name,
                         etag=info["sha256"], conditional=True, max_age=60, last_modified=info["modified"])
    # RFC 9530: the digest of the whole representation, whichever range was sent.
    response.headers["Repr-Digest"] = "sha-256=:" + base64.b64encode(bytes.fromhex(info["sha256"])).decode() + ":"
    return response


def _build_report(paths) -> dict:
    try:
        return json.loads(paths.report_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@bp.route("/.well-known/void", methods=["GET", "HEAD"])
def void() -> Response:
    """The VoID description. Each dump's checksum is given with the SPDX vocabulary (as DCAT 3 recommends):
    ``spdx:checksum [ spdx:algorithm spdx:checksumAlgorithm_sha256 ; spdx:checksumValue "..."^^xsd:hexBinary ]``."""
    state = State.current()
    if _rdf_format() is None:
        return not_acceptable()
    root = state.config.public_url + "/"  # the setting, never the request's Host header
    graph = bind_prefixes(Graph())
    graph.bind("void", VOID)
    graph.bind("dcat", DCAT)
    graph.bind("spdx", SPDX)
    dataset = URIRef(root + ".well-known/void#dataset")
    graph.add((dataset, RDF.type, VOID.Dataset))
    graph.add((dataset, DCTERMS.title, Literal("cmc-kg", lang="en")))
    graph.add((dataset, DCTERMS.description, Literal(
        "The open knowledge graph of the Cluster Munition Coalition and the humanitarian-disarmament treaties: "
        "one named graph per source, the ontology, the source registry and the inferred triples.", lang="en")))
    graph.add((dataset, VOID.sparqlEndpoint, URIRef(root + "sparql")))
    graph.add((dataset, VOID.triples, Literal(state.triples, datatype=XSD.integer)))
    graph.add((dataset, VOID.uriSpace, Literal(str(ID))))
    graph.add((dataset, VOID.vocabulary, ONTOLOGY))
    graph.add((dataset, VOID.rootResource, ONTOLOGY))
    report = _build_report(state.paths)
    if state.paths.dump_file.exists():
        dumps = published_dumps(state.paths.dump_file)
        modified = next((report[k] for k in ("modified", "created", "built_at", "finished") if report.get(k)), None)
        when = Literal(modified) if modified else Literal(
            datetime.fromtimestamp(state.paths.dump_file.stat().st_mtime, timezone.utc).replace(microsecond=0)
            .isoformat(), datatype=XSD.dateTime)
        graph.add((dataset, DCTERMS.modified, when))
        if report.get("created"):
            graph.add((dataset, DCTERMS.created, Literal(report["created"])))
        for name, info in dumps.items():
            url = URIRef(root + "dumps/" + name)
            graph.add((dataset, VOID.dataDump, url))
            graph.add((url, RDF.type, DCAT.Distribution))
            graph.add((url, DCAT.downloadURL, url))
            graph.add((url, DCAT.mediaType, URIRef("https://www.iana.org/assignments/media-types/" + info["media_type"])))
            graph.add((url, DCTERMS["format"], Literal(info["media_type"])))
            graph.add((url, VOID.feature, URIRef(info["format"])))
            graph.add((url, DCAT.byteSize, Literal(info["bytes"], datatype=XSD.nonNegativeInteger)))
            checksum = BNode()
            graph.add((url, URIRef(SPDX + "checksum"), checksum))
            graph.add((checksum, RDF.type, URIRef(SPDX + "Checksum")))
            graph.add((checksum, URIRef(SPDX + "algorithm"), URIRef(SPDX + "checksumAlgorithm_sha256")))
            graph.add((checksum, URIRef(SPDX + "checksumValue"), Literal(info["sha256"], datatype=XSD.hexBinary)))
    for g, info in graph_catalogue(state).items():
        subset = URIRef(g)
        graph.add((dataset, VOID.subset, subset))
        graph.add((subset, RDF.type, VOID.Dataset))
        graph.add((subset, VOID.triples, Literal(info["triples"], datatype=XSD.integer)))
        if info.get("source"):
            graph.add((subset, PROV.wasDerivedFrom, URIRef(info["source"])))
        if info.get("title"):
            graph.add((subset, DCTERMS.title, Literal(info["title"], lang="en")))
    return _finish(rdf_response(graph), _rdf_format().name, root)
