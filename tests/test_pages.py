"""Entity, graph and ontology pages, VoID and dumps, through the app in process (the `app_server` fixture); every
page of the graph through a real `cmc-kg serve`."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest
from rdflib import Graph, Literal, Namespace, URIRef

from cmc_kg.namespaces import CMC, GRAPH, ID, INFERRED_GRAPH, ONTOLOGY, PROV, RDF, RDFS, VOID
from cmc_kg.settings import REPO_ROOT
from cmc_kg.server.pages import local_path

from conftest import exchange

SPDX = Namespace("http://spdx.org/rdf/terms#")
DCAT = Namespace("http://www.w3.org/ns/dcat#")
LTU = ID["country/LTU"]


def fetch(url: str, accept: str | None = None, method: str = "GET", headers: dict | None = None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    return exchange(url, method, headers={**(headers or {}), **({"Accept": accept} if accept else {})})


class Tables(HTMLParser):
    """The cells' text of every table with a class, by class: {class: [[cell, ...], ...]}."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = (attrs.get("class") or "").split()[0] if attrs.get("class") else None
            if self._table:
                self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: bytes) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(html.decode("utf-8"))
    return parser.tables


# --------------------------------------------------------------------------------------------------
# Entity pages
# --------------------------------------------------------------------------------------------------

def test_entity_page_in_html_shows_label_types_facts_with_sources_and_actions(app_server):
    status, headers, body = fetch(app_server.url + local_path(str(LTU)), "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
    assert status == 200 and headers.get_content_type() == "text/html"
    assert "Accept" in headers["Vary"]
    html = body.decode("utf-8")
    assert "<h1>Lithuania</h1>" in html and "<title>Lithuania" in html
    assert 'href="/ontology#Country"' in html  # its type, linked to the ontology documentation

    tables = tables_of(body)
    # The label fact names the graph that asserts it.
    label_rows = [row for row in tables["facts"] if "Lithuania @en" in row]
    assert any("ISO-CODES" in row[-1] for row in label_rows), label_rows
    # The treaty actions, in date order, each with its source.
    actions = [row for row in tables["actions"] if row[0] != "Date"]
    dates = [row[0] for row in actions]
    assert dates == sorted(dates) and len(dates) >= 10
    withdrawal = [row for row in actions if row[0] == "2025-03-06"]
    assert len(withdrawal) == 1
    date, treaty, kind, source = withdrawal[0]
    assert treaty == "Convention on Cluster Munitions" and "withdrawal" in kind
    assert source == "UNTC"
    # Sources are listed with their titles; incoming links and the query page are linked.
    assert any(row[0] == "UNTC" and "United Nations Treaty Collection" in row[1]
               for row in tables["facts"])
    assert 'id="referenced-by"' in html and "/query?query=DESCRIBE" in html


@pytest.mark.parametrize("accept,parse_as", [
    ("text/turtle", "turtle"),
    ("application/ld+json", "json-ld"),
    ("application/n-triples", "nt"),
    ("application/rdf+xml", "xml"),
])
def test_entity_in_each_rdf_format_by_accept(app_server, accept, parse_as):
    status, headers, body = fetch(app_server.url + local_path(str(LTU)), accept)
    assert status == 200 and headers.get_content_type() == accept
    assert "Accept" in headers["Vary"]
    graph = Graph().parse(data=body, format=parse_as)
    assert (LTU, RDFS.label, Literal("Lithuania", lang="en")) in graph
    assert (LTU, RDF.type, CMC.Country) in graph
    assert set(graph.subjects()) == {LTU}  # the entity's own description
    assert (LTU, RDF.type, URIRef("http://www.w3.org/ns/prov#Agent")) not in graph  # asserted triples only


def test_entity_format_parameter_head_and_conditional_get(app_server):
    url = app_server.url + local_path(str(LTU))
    status, headers, body = fetch(url + "?format=ttl", "text/html")
    assert status == 200 and headers.get_content_type() == "text/turtle"
    status, headers, body = fetch(url, "text/html", method="HEAD")
    assert status == 200 and body == b"" and "Accept" in headers["Vary"]
    etag = headers["ETag"]
    assert etag
    status, _, _ = fetch(url, "text/html", headers={"If-None-Match": etag})
    assert status == 304
    status, _, _ = fetch(url, "application/pdf")
    assert status == 406


def test_unknown_iris_are_404(app_server):
    for accept in ("text/html", "text/turtle"):
        status, headers, _ = fetch(app_server.url + local_path(str(ID["nope/xyz"])), accept)
        assert status == 404 and "Accept" in headers["Vary"]
    # A path that is no valid IRI is not found either (and never reaches the query as broken SPARQL).
    assert fetch(app_server.url + local_path(str(ID)) + "a%7Bb%22c%3E", "text/turtle")[0] == 404
    status, _, _ = fetch(app_server.url + local_path(str(GRAPH["nope"])), "text/html")
    assert status == 404
    status, _, _ = fetch(app_server.url + "/dumps/nope.nq")
    assert status == 404


@pytest.mark.system
def test_every_iri_the_graph_mints_dereferences(server, store):
    """Every IRI under the entity and graph namespaces, and every ontology term, answers 200: thousands of pages,
    from a real server whose worker processes answer their queries side by side."""
    rows = store.query(f"""SELECT DISTINCT ?x WHERE {{
        {{ GRAPH ?g {{ ?x ?p ?o }} }} UNION {{ GRAPH ?g {{ ?s ?p ?x }} }} UNION {{ GRAPH ?x {{ ?s ?p ?o }} }}
        FILTER(isIRI(?x) && (STRSTARTS(STR(?x), "{ID}") || STRSTARTS(STR(?x), "{GRAPH}")
                             || STRSTARTS(STR(?x), "{CMC._NS}")))
    }}""")
    iris = sorted({row["x"].value for row in rows})
    assert sum(iri.startswith(str(ID)) for iri in iris) > 1500
    paths = sorted({local_path(iri).split("#")[0] for iri in iris})

    def status(path: str) -> tuple[str, int]:
        return path, fetch(server.url + urllib.request.quote(path, safe="/:@!$&'()*+,;=-._~%"), "text/html")[0]

    with ThreadPoolExecutor(8) as pool:
        failures = [(path, code) for path, code in pool.map(status, paths) if code != 200]
    assert failures == []


# --------------------------------------------------------------------------------------------------
# Named graphs
# --------------------------------------------------------------------------------------------------

def test_graph_page_and_graph_data(app_server, built):
    report = built[1]
    iri = str(GRAPH["untc"])
    status, headers, body = fetch(app_server.url + local_path(iri), "text/html")
    assert status == 200 and "Accept" in headers["Vary"]
    html = body.decode("utf-8")
    assert "UNTC" in html and "United Nations Treaty Collection" in html
    expected = _triples_per_graph(report)[iri]
    assert f"{expected:,}" in html
    status, headers, body = fetch(app_server.url + local_path(iri), "application/n-triples")
    assert status == 200 and len(Graph().parse(data=body, format="nt")) == expected
    status, _, body = fetch(app_server.url + local_path(str(INFERRED_GRAPH)), "text/turtle")
    assert status == 200 and len(Graph().parse(data=body, format="turtle")) == _triples_per_graph(report)[str(INFERRED_GRAPH)]


def _triples_per_graph(report) -> dict[str, int]:
    return report["triples_per_graph"] if isinstance(report, dict) else report.triples_per_graph


# --------------------------------------------------------------------------------------------------
# The ontology
# --------------------------------------------------------------------------------------------------

def _ontology_file() -> Graph:
    return Graph().parse(REPO_ROOT / "ontology" / "cmc.ttl", format="turtle")


def test_ontology_html_anchors_every_term(app_server):
    status, headers, body = fetch(app_server.url + local_path(str(ONTOLOGY)), "text/html")
    assert status == 200 and headers.get_content_type() == "text/html" and "Accept" in headers["Vary"]
    html = body.decode("utf-8")
    ids = re.findall(r'\bid="([^"]*)"', html)
    assert len(ids) == len(set(ids)), "fragment ids must be unique"
    ontology = _ontology_file()
    terms = {str(s)[len(str(CMC._NS)):] for s in ontology.subjects() if str(s).startswith(str(CMC._NS))}
    classes_and_properties = {str(s)[len(str(CMC._NS)):] for kind in (
        URIRef("http://www.w3.org/2002/07/owl#Class"), URIRef("http://www.w3.org/2002/07/owl#ObjectProperty"),
        URIRef("http://www.w3.org/2002/07/owl#DatatypeProperty"), URIRef("http://www.w3.org/2002/07/owl#AnnotationProperty"))
        for s in ontology.subjects(RDF.type, kind) if str(s).startswith(str(CMC._NS))}
    assert len(classes_and_properties) > 50 and classes_and_properties <= terms
    assert sorted(terms - set(ids)) == []
    # The term pages are the ontology page: /ontology/ and the version IRI serve it too.
    for path in (local_path(str(ONTOLOGY)) + "/", local_path(str(ONTOLOGY) + "/0.1.0")):
        assert fetch(app_server.url + path, "text/html")[0] == 200


@pytest.mark.parametrize("accept,parse_as", [("text/turtle", "turtle"), ("application/rdf+xml", "xml")])
def test_ontology_for_tools(app_server, accept, parse_as):
    status, headers, body = fetch(app_server.url + local_path(str(ONTOLOGY)), accept)
    assert status == 200 and headers.get_content_type() == accept and "Accept" in headers["Vary"]
    served = Graph().parse(data=body, format=parse_as)
    assert len(served) == len(_ontology_file())
    assert (ONTOLOGY, RDF.type, URIRef("http://www.w3.org/2002/07/owl#Ontology")) in served


# --------------------------------------------------------------------------------------------------
# VoID and dumps
# --------------------------------------------------------------------------------------------------

def _void(app_server) -> Graph:
    status, headers, body = fetch(app_server.url + "/.well-known/void", "text/turtle")
    assert status == 200 and headers.get_content_type() == "text/turtle" and "Accept" in headers["Vary"]
    return Graph().parse(data=body, format="turtle")


def test_void_describes_the_dataset_and_its_graphs(app_server, built):
    void = _void(app_server)
    [dataset] = [d for d in void.subjects(RDF.type, VOID.Dataset) if (None, VOID.subset, d) not in void]
    assert void.value(dataset, VOID.sparqlEndpoint) == URIRef(app_server.url + "/sparql")
    assert str(void.value(dataset, VOID.uriSpace)) == str(ID)
    assert void.value(dataset, VOID.vocabulary) == ONTOLOGY
    assert int(void.value(dataset, VOID.triples)) > 10_000
    assert void.value(dataset, URIRef("http://purl.org/dc/terms/title")) is not None
    assert void.value(dataset, URIRef("http://purl.org/dc/terms/modified")) is not None
    subsets = {str(s): s for s in void.objects(dataset, VOID.subset)}
    expected = _triples_per_graph(built[1])
    assert set(subsets) == set(expected)
    for g, count in expected.items():
        assert int(void.value(subsets[g], VOID.triples)) == count
    source = void.value(subsets[str(GRAPH["untc"])], PROV.wasDerivedFrom)
    assert source == ID["source/untc"]


def test_void_dumps_download_and_match_their_checksums(app_server, built):
    void = _void(app_server)
    dumps = sorted(void.objects(None, VOID.dataDump))
    assert URIRef(app_server.url + "/dumps/cmc-kg.nq") in dumps
    for url in dumps:
        status, headers, body = fetch(str(url))
        assert status == 200
        digest = hashlib.sha256(body).hexdigest()
        [checksum] = void.objects(url, SPDX.checksum)
        assert void.value(checksum, SPDX.algorithm) == SPDX.checksumAlgorithm_sha256
        assert str(void.value(checksum, SPDX.checksumValue)) == digest
        assert int(void.value(url, DCAT.byteSize)) == len(body)
        assert headers["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        status, _, sidecar = fetch(str(url) + ".sha256")
        assert status == 200 and sidecar.decode() == f"{digest}  {str(url).rsplit('/', 1)[1]}\n"
    status, headers, body = fetch(app_server.url + "/dumps/cmc-kg.nq")
    assert headers.get_content_type() == "application/n-quads"
    assert body == built[0].dump_file.read_bytes()
    # Conditional and partial downloads.
    assert fetch(app_server.url + "/dumps/cmc-kg.nq", headers={"If-None-Match": headers["ETag"]})[0] == 304
    status, _, part = fetch(app_server.url + "/dumps/cmc-kg.nq", headers={"Range": "bytes=0-99"})
    assert status == 206 and part == body[:100]


def test_templates_spell_no_project_iri():
    base = str(ONTOLOGY).rsplit("/", 1)[0].split("://", 1)[1]
    for path in sorted((REPO_ROOT / "server" / "templates").glob("*.html")):
        assert base not in path.read_text(encoding="utf-8"), path


def test_dumps_index_lists_what_void_describes(app_server):
    void = _void(app_server)
    status, headers, body = fetch(app_server.url + "/dumps/")
    assert status == 200 and headers.get_content_type() == "text/html"
    page = body.decode()
    for url in void.objects(None, VOID.dataDump):
        [checksum] = void.objects(url, SPDX.checksum)
        name = str(url).rsplit("/", 1)[1]
        assert f'href="/dumps/{name}"' in page and str(void.value(checksum, SPDX.checksumValue)) in page
        assert "{:,}".format(int(void.value(url, DCAT.byteSize))) in page


def test_the_jsonld_context_is_published_where_the_readme_says(app_server):
    import json

    status, headers, body = fetch(app_server.url + "/context.jsonld")
    assert status == 200 and headers.get_content_type() == "application/ld+json"
    context = json.loads(body)["@context"]
    assert context["cmc"] == str(CMC) and context["kgorg"].endswith("/id/org/")
    assert "/context.jsonld" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/", "/query", "/explore", "/explore/network", "/ontology", "/id/country/FRA",
                                  "/dumps/"])
def test_every_page_family_has_the_same_site_navigation(app_server, path):
    """Query, explore, ontology, entity and dump pages lead to one another through one navigation."""
    status, _, body = fetch(app_server.url + path, headers={"Accept": "text/html"})
    page = body.decode()
    assert status == 200 and page.count('class="site-nav"') == 1, path
    nav = page[page.index('class="site-nav"'):page.index("</nav>", page.index('class="site-nav"'))]
    assert re.findall(r'href="([^"]+)"', nav) == ["/query", "/explore", "/ontology", "/dumps/", "/.well-known/void"]
