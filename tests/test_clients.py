"""Real SPARQL clients through a real `cmc-kg serve` on 127.0.0.1: each gets the answers the query layer gives.

SPARQLWrapper in every results format (JSON, XML, CSV, TSV) and every graph format it names (RDF/XML, Turtle,
N3, JSON-LD, and its "xml" and "json"), also with no format set; rdflib's SPARQLStore; Debian's `roqet`
(rasqal-utils, written in C); and headless Chromium opening a link to /sparql?query=… and reading the row cap
from another origin. The expected answers come from the
project's own query layer over the same build, in process.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET

import pyoxigraph as ox
import pytest
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.plugins.stores.sparqlstore import SPARQLStore
from SPARQLWrapper import (CSV, JSON, JSONLD, N3, POST, POSTDIRECTLY, RDFXML, TSV, TURTLE, URLENCODED, XML,
                           SPARQLWrapper)

from cmc_kg.query import PREFIX_MAP, example_queries, run_query, select
from conftest import start_server, stop_server, watched_page

QUERIES = {q.path.stem: q.text for q in example_queries()}
# A handful for the slower clients: lookups, aggregates, subqueries, paths, GRAPH, escaped local names.
HANDFUL = ["02-parties-on-a-date", "06-sources-of-a-fact", "07-claims-against-treaty-records",
           "10-entry-into-force-threshold", "13-cmc-members", "16-new-parties-per-year", "19-search-by-label"]
GRAPH_QUERIES = {
    "construct-labels": "CONSTRUCT { ?c rdfs:label ?l ; cmc:isoAlpha3 ?code } "
                        "WHERE { ?c a cmc:Country ; cmc:isoAlpha3 ?code ; rdfs:label ?l }",
    "construct-actions": "CONSTRUCT { ?a a ?type ; cmc:actor ?s ; cmc:date ?d } WHERE { "
                         "?a cmc:treaty treaty:ccm ; cmc:actor ?s ; cmc:date ?d ; a ?type }",
    "describe-country": "DESCRIBE country:NOR",
    "describe-treaty": "DESCRIBE treaty:ccm",
    "describe-event": r"DESCRIBE event:ccm\/entry-into-force",
}
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
RESULTS_NS = "{http://www.w3.org/2005/sparql-results#}"
PREFIX_LINES = "".join(f"PREFIX {prefix}: <{iri}>\n" for prefix, iri in PREFIX_MAP.items())

pytestmark = [pytest.mark.system, pytest.mark.filterwarnings(
    # SPARQLWrapper guesses the query form from the text, comments included: "# description: ... describe ..."
    # makes it send Accept: */* (its format= parameter still asks for the right format).
    "ignore:Sending Accept header:RuntimeWarning",
    # SPARQLWrapper parses JSON-LD into rdflib's deprecated ConjunctiveGraph.
    "ignore:ConjunctiveGraph is deprecated:DeprecationWarning",
)]


# Every client's terms become one comparable shape: ("uri", iri), ("bnode",), ("literal", text, lang, datatype),
# with the datatype left empty for plain and language-tagged strings, as the results formats leave it.

def _literal(value: str, language: str | None, datatype: str | None) -> tuple:
    language = (language or "").lower()
    datatype = "" if language or datatype in (None, "", XSD_STRING, RDF_LANG_STRING) else datatype
    return ("literal", value, language, datatype)


def _ox_term(term) -> tuple | None:
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return ("uri", term.value)
    if isinstance(term, ox.BlankNode):
        return ("bnode",)
    return _literal(term.value, term.language, term.datatype.value)


def _json_term(term: dict | None) -> tuple | None:
    if term is None:
        return None
    if term["type"] == "uri":
        return ("uri", term["value"])
    if term["type"] == "bnode":
        return ("bnode",)
    return _literal(term["value"], term.get("xml:lang"), term.get("datatype"))


def _rdflib_term(term) -> tuple | None:
    if term is None:
        return None
    if isinstance(term, URIRef):
        return ("uri", str(term))
    if isinstance(term, BNode):
        return ("bnode",)
    assert isinstance(term, Literal)
    return _literal(str(term), term.language, str(term.datatype) if term.datatype else None)


def _xml_term(binding) -> tuple | None:
    """A <binding>'s term, from an ElementTree element or an xml.dom node (roqet writes <unbound/> for none)."""
    if isinstance(binding, ET.Element):
        child = next(iter(binding))
        name, text, attrs = child.tag.removeprefix(RESULTS_NS), child.text or "", child.attrib
        language = attrs.get("{http://www.w3.org/XML/1998/namespace}lang")
        datatype = attrs.get("datatype")
    else:
        child = next(n for n in binding.childNodes if n.nodeType == n.ELEMENT_NODE)
        name = child.localName
        text = "".join(n.data for n in child.childNodes if n.nodeType == n.TEXT_NODE)
        language = child.getAttribute("xml:lang") or None
        datatype = child.getAttribute("datatype") or None
    if name == "uri":
        return ("uri", text)
    if name == "bnode":
        return ("bnode",)
    if name == "unbound":
        return None
    assert name == "literal", name
    return _literal(text, language, datatype)


def _sorted(rows) -> list[tuple]:
    return sorted((tuple(row) for row in rows), key=repr)


def expected(store, text: str) -> tuple[list[str], list[tuple]]:
    """The variables and rows (as comparable terms) the query layer gives in process (once per query)."""
    key = (id(store), text)
    if key not in _EXPECTED:
        _EXPECTED[key] = _evaluate(store, text)
    return _EXPECTED[key]


_EXPECTED: dict = {}


def _evaluate(store, text: str) -> tuple[list[str], list[tuple]]:
    solutions = run_query(store, text)
    names = [v.value for v in solutions.variables]
    return names, _sorted([_ox_term(s[n]) for n in names] for s in solutions)


def expected_values(store, text: str) -> list[tuple]:
    """Rows as plain strings (CSV's view), from :func:`cmc_kg.query.select`."""
    rows = select(store, text)
    return _sorted([row.get(n, "") for n in rows.variables] for row in rows.rows)


def expected_graph(store, text: str) -> Graph:
    triples = list(run_query(store, text))
    return Graph().parse(data=ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES), format="nt")


@pytest.fixture(scope="module")
def endpoint(server):
    return server.url + "/sparql"


def wrapper(endpoint: str, text: str, fmt: str, method: str | None = None, request_method: str | None = None):
    client = SPARQLWrapper(endpoint)
    client.setQuery(text)
    client.setReturnFormat(fmt)
    client.setTimeout(30)
    if method:
        client.setMethod(method)
    if request_method:
        client.setRequestMethod(request_method)
    return client.query()


def test_every_example_query_is_tested_here():
    assert len(QUERIES) >= 15 and set(HANDFUL) <= set(QUERIES)


# SPARQLWrapper

@pytest.mark.parametrize("stem", sorted(QUERIES))
def test_sparqlwrapper_json(endpoint, store, stem):
    result = wrapper(endpoint, QUERIES[stem], JSON)
    assert result.response.headers["Content-Type"].startswith("application/sparql-results+json")
    answer = result.convert()
    names, rows = expected(store, QUERIES[stem])
    assert answer["head"]["vars"] == names
    assert rows, f"{stem} has no answers to compare"
    assert _sorted([_json_term(b.get(n)) for n in names] for b in answer["results"]["bindings"]) == rows


@pytest.mark.parametrize("method,request_method", [(POST, URLENCODED), (POST, POSTDIRECTLY)])
@pytest.mark.parametrize("stem", ["02-parties-on-a-date", "07-claims-against-treaty-records", "20-conflicting-dates"])
def test_sparqlwrapper_post(endpoint, store, stem, method, request_method):
    answer = wrapper(endpoint, QUERIES[stem], JSON, method, request_method).convert()
    names, rows = expected(store, QUERIES[stem])
    assert _sorted([_json_term(b.get(n)) for n in names] for b in answer["results"]["bindings"]) == rows


@pytest.mark.parametrize("stem", sorted(QUERIES))
def test_sparqlwrapper_xml(endpoint, store, stem):
    result = wrapper(endpoint, QUERIES[stem], XML)
    assert result.response.headers["Content-Type"].startswith("application/sparql-results+xml")
    document = result.convert()  # xml.dom.minidom
    names, rows = expected(store, QUERIES[stem])
    assert [v.getAttribute("name") for v in document.getElementsByTagName("variable")] == names
    got = []
    for solution in document.getElementsByTagName("result"):
        bound = {b.getAttribute("name"): _xml_term(b) for b in solution.getElementsByTagName("binding")}
        got.append([bound.get(n) for n in names])
    assert _sorted(got) == rows


@pytest.mark.parametrize("stem", sorted(QUERIES))
def test_sparqlwrapper_csv(endpoint, store, stem):
    result = wrapper(endpoint, QUERIES[stem], CSV)
    assert result.response.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(result.convert().decode("utf-8"), newline="")))
    assert table[0] == select(store, QUERIES[stem]).variables
    assert _sorted(table[1:]) == expected_values(store, QUERIES[stem])


@pytest.mark.parametrize("stem", sorted(QUERIES))
def test_sparqlwrapper_tsv(endpoint, store, stem):
    result = wrapper(endpoint, QUERIES[stem], TSV)
    assert result.response.headers["Content-Type"].startswith("text/tab-separated-values")
    body = result.convert()
    names, rows = expected(store, QUERIES[stem])
    assert body.decode("utf-8").split("\n", 1)[0] == "\t".join(f"?{n}" for n in names)
    # The TSV terms are N-Triples terms; parse them with a strict TSV results reader.
    parsed = ox.parse_query_results(body, format=ox.QueryResultsFormat.TSV)
    assert [v.value for v in parsed.variables] == names
    assert _sorted([_ox_term(s[n]) for n in names] for s in parsed) == rows


# SPARQLWrapper with its own defaults: what its users write, with no Accept header or format parameter of
# ours. It sends its format's name in `format`, `output` and `results` (some twice, with a media type) and
# an Accept header of its own; with no format set it asks for XML.

def sparqlwrapper(endpoint: str, text: str, fmt: str | None):
    """``SPARQLWrapper(url).setQuery(text).queryAndConvert()``: (the answer's media type, the converted answer)."""
    client = SPARQLWrapper(endpoint)
    client.setQuery(text)
    client.setTimeout(30)
    if fmt:
        client.setReturnFormat(fmt)
    result = client.query()
    return result.response.headers["Content-Type"].split(";")[0], result.convert()


GRAPH_MEDIA_TYPES = {XML: "application/rdf+xml", RDFXML: "application/rdf+xml", None: "application/rdf+xml",
                     TURTLE: "text/turtle", N3: "text/turtle", JSONLD: "application/ld+json",
                     JSON: "application/ld+json"}


@pytest.mark.parametrize("fmt", list(GRAPH_MEDIA_TYPES), ids=lambda f: f or "no-format-set")
@pytest.mark.parametrize("name", sorted(GRAPH_QUERIES))
def test_sparqlwrapper_graph_in_every_format(endpoint, store, name, fmt):
    media_type, answer = sparqlwrapper(endpoint, GRAPH_QUERIES[name], fmt)
    assert media_type == GRAPH_MEDIA_TYPES[fmt]
    if isinstance(answer, bytes):  # Turtle (SPARQLWrapper's N3) is returned as it came
        got = Graph().parse(data=answer, format="turtle")
    else:  # RDF/XML and JSON-LD are parsed by SPARQLWrapper into an rdflib graph
        got = Graph()
        for triple in answer.triples((None, None, None)):
            got.add(triple)
    want = expected_graph(store, GRAPH_QUERIES[name])
    assert len(want) > 0 and len(got) == len(want)
    assert isomorphic(got, want)


@pytest.mark.parametrize("fmt", [JSON, XML, CSV, TSV, None], ids=lambda f: f or "no-format-set")
def test_sparqlwrapper_ask_in_every_format(endpoint, fmt):
    for text, truth in (("ASK { country:NOR cmc:isoAlpha3 'NOR' }", "true"),
                        ("ASK { country:NOR cmc:isoAlpha3 'FRA' }", "false")):
        _, answer = sparqlwrapper(endpoint, text, fmt)
        if fmt == JSON:
            assert answer["boolean"] is (truth == "true")
        elif fmt in (XML, None):
            assert answer.getElementsByTagName("boolean")[0].firstChild.data == truth
        else:
            assert answer.decode("utf-8").split()[-1] == truth


@pytest.mark.parametrize("stem", HANDFUL)
def test_sparqlwrapper_select_with_no_format_set(endpoint, store, stem):
    media_type, document = sparqlwrapper(endpoint, QUERIES[stem], None)
    assert media_type == "application/sparql-results+xml"
    names, rows = expected(store, QUERIES[stem])
    got = [[{b.getAttribute("name"): _xml_term(b) for b in solution.getElementsByTagName("binding")}.get(n)
            for n in names] for solution in document.getElementsByTagName("result")]
    assert rows and _sorted(got) == rows


# rdflib's SPARQLStore

@pytest.mark.parametrize("return_format,method", [("xml", "GET"), ("json", "GET"), ("json", "POST"),
                                                  ("xml", "POST_FORM")])
def test_rdflib_sparqlstore(endpoint, store, return_format, method):
    graph = Graph(store=SPARQLStore(endpoint, returnFormat=return_format, method=method, timeout=30))
    for stem in HANDFUL:
        result = graph.query(QUERIES[stem])
        names, rows = expected(store, QUERIES[stem])
        assert [str(v) for v in result.vars] == names, stem
        assert _sorted([_rdflib_term(row[n]) for n in names] for row in result) == rows, stem


def test_rdflib_sparqlstore_graph_api(endpoint, store):
    graph = Graph(store=SPARQLStore(endpoint))
    norway = URIRef(PREFIX_MAP["country"] + "NOR")
    labels = {str(o) for o in graph.objects(norway, URIRef("http://www.w3.org/2000/01/rdf-schema#label"))}
    assert "Norway" in labels
    assert graph.query("ASK { country:NOR cmc:isoAlpha3 'NOR' }").askAnswer is True
    want = expected_graph(store, GRAPH_QUERIES["construct-labels"])
    assert isomorphic(Graph() + graph.query(GRAPH_QUERIES["construct-labels"]).graph, want)


# roqet (rasqal-utils): a client written in C, with its own HTTP stack and results parser

def roqet(endpoint: str, text: str) -> ET.Element:
    program = shutil.which("roqet")
    if program is None:
        pytest.fail("roqet is not installed: it is the non-Python client these tests require "
                    "(Debian/Ubuntu: apt-get install rasqal-utils)")
    done = subprocess.run([program, "-q", "-i", "sparql11-query", "-p", endpoint, "-e", PREFIX_LINES + text,
                           "-r", "xml"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return ET.fromstring(done.stdout.encode("utf-8"))


@pytest.mark.parametrize("stem", HANDFUL + ["04-timeline-of-a-state", "14-icbl-cmc-structure"])
def test_roqet(endpoint, store, stem):
    document = roqet(endpoint, QUERIES[stem])
    names, rows = expected(store, QUERIES[stem])
    assert [v.get("name") for v in document.iter(RESULTS_NS + "variable")] == names
    got = []
    for solution in document.iter(RESULTS_NS + "result"):
        bound = {b.get("name"): _xml_term(b) for b in solution.iter(RESULTS_NS + "binding")}
        got.append([bound.get(n) for n in names])
    assert rows and _sorted(got) == rows


# Browsers: a link to the endpoint, the row cap on the query page, and a script on another origin.

TWO_CODES = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"
COUNTRIES = "SELECT ?c WHERE { ?c a cmc:Country }"


@pytest.fixture(scope="module")
def capped(built):
    """A server that cuts answers at 5 rows."""
    live = start_server(built[0].build_dir, "--max-rows", "5")
    yield live
    stop_server(live)


@pytest.fixture
def page(browser):
    context, page, _, errors = watched_page(browser)
    yield page
    context.close()
    assert not errors, f"the browser reported errors: {errors}"


def _table(page) -> list[list[str]]:
    page.wait_for_selector("#results:not([aria-busy]) tbody tr")
    return page.eval_on_selector_all(
        "#results tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td:not(.rownum)')].map(c => c.innerText))")


def test_a_link_to_the_endpoint_opens_as_the_query_and_its_results(endpoint, page):
    page.goto(endpoint + "?" + urllib.parse.urlencode({"query": TWO_CODES}))
    assert page.input_value("#query") == TWO_CODES
    assert _table(page) == [["FRA"], ["NOR"]]


def test_the_query_page_says_when_an_answer_was_cut(capped, page):
    from playwright.sync_api import expect

    page.goto(capped.url + "/query?" + urllib.parse.urlencode({"query": COUNTRIES}))
    assert len(_table(page)) == 5
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("cut at 5 results")


def test_a_script_on_another_origin_reads_the_row_cap_and_etag(server, capped, page):
    """fetch() from another origin, with a header that needs a preflight (jQuery's X-Requested-With)."""
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.goto(server.url + "/health")  # another port: another origin
    seen = page.evaluate("""async url => {
        const response = await fetch(url, {headers: {"X-Requested-With": "XMLHttpRequest",
                                                     Accept: "application/sparql-results+json"}});
        const answer = await response.json();
        return {rows: answer.results.bindings.length, cap: response.headers.get("X-SPARQL-MaxRows"),
                etag: response.headers.get("ETag")};
    }""", capped.url + "/sparql?" + urllib.parse.urlencode({"query": COUNTRIES}))
    assert seen["rows"] == 5 and seen["cap"] == "5" and seen["etag"]
