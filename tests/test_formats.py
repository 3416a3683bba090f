"""Every writer in cmc_kg/formats.py, fed hostile RDF terms: its output parses in a strict parser of its format
and holds the same terms, or it refuses with NotRepresentable (the server's 406), and only for a reason the
format's specification gives. Then the same through a real server: 406, never 500 or an ill-formed 200."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
import xml.parsers.expat

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from cmc_kg.formats import (RDF_FORMATS, RESULT_FORMATS, NotAcceptable, NotRepresentable, write_boolean,
                            write_solutions, write_triples)
from cmc_kg.query import PREFIX_MAP

from conftest import in_process_server
from test_sparql_protocol import call

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RESULTS_PARSERS = {"json": ox.QueryResultsFormat.JSON, "xml": ox.QueryResultsFormat.XML,
                   "tsv": ox.QueryResultsFormat.TSV}
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the huge literals
csv.field_size_limit(1 << 24)  # the reader's own cap (128 KiB) is no part of the format
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# ---------------------------------------------------------------------------------------------------------
# Hostile terms
# ---------------------------------------------------------------------------------------------------------

HOSTILE_TEXT = ["", " ", "\x00", "\x01", "\x08", "\x0b", "\x1f", "\x7f", "\x85", "\ufffe", "\uffff", "\ufdd0",
                "\r", "\n", "\r\n", "\t", "a\rb", "]]>", "<a>&amp;", '"', "'", '"""', "\\", "\\u0041", ",", "\"\",\"",
                "\u2028", "\U0010ffff", "\U0001f600", "<<( <a> <b> <c> )>>", "_:b0", "?x", "true", "1", "-0.0E0"]
BASES = ["http://example.org/", "http://example.org/ns#", "urn:x:", "https://e.example/a/b?q=1&r=", "tag:a@b,2000:",
         RDF, XSD, "http://www.w3.org/2000/xmlns/", "http://www.w3.org/XML/1998/namespace",
         "http://www.w3.org/2005/11/its", *sorted(set(PREFIX_MAP.values()))]
IRI_TAILS = ["", "/", "#", "1", "a1", "1a", "-", ".", "a.", "_", "%20", "%C3%A9", "é", "·", "\u0300", "\u0e01",
             ":", "a:b", "li", "Description", "type", "nodeID", "@type", "~", "!$&'()*+,;=", "\ue000", "\U00010000"]
VALUE_CHARS = st.characters(blacklist_categories=("Cs",))  # lone surrogates: see test_lone_surrogates_…
DATATYPES = [XSD + "string", XSD + "integer", XSD + "boolean", XSD + "dateTime", RDF + "langString",
             RDF + "dirLangString", RDF + "JSON", RDF + "XMLLiteral", RDF + "HTML", "urn:x:1", "http://example.org/dt/"]


def _valid(make, *args):
    try:
        return make(*args)
    except (ValueError, TypeError, SyntaxError):
        return None


iris = st.builds(lambda base, tail: _valid(ox.NamedNode, base + tail), st.sampled_from(BASES),
                 st.one_of(st.sampled_from(IRI_TAILS), st.text(max_size=8)),
                 ).filter(lambda iri: iri is not None)
texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(VALUE_CHARS, max_size=40),
                  st.integers(65_000, 70_000).map(lambda n: "\x01a\r" * n))  # huge
literals = st.one_of(
    st.builds(ox.Literal, texts),
    st.builds(lambda value, tag: ox.Literal(value, language=tag), texts,
              st.sampled_from(["en", "EN-gb", "x-private", "zh-Hant-TW", "i-klingon", "de-CH-1996"])),
    st.builds(lambda value, tag, direction: ox.Literal(value, language=tag, direction=direction), texts,
              st.sampled_from(["ar", "he-IL"]), st.sampled_from([ox.BaseDirection.LTR, ox.BaseDirection.RTL])),
    st.builds(lambda value, datatype: ox.Literal(value, datatype=datatype), texts,
              st.one_of(st.sampled_from(DATATYPES).map(ox.NamedNode), iris)),
)
blank_nodes = st.one_of(st.builds(ox.BlankNode),
                        st.builds(lambda label: _valid(ox.BlankNode, label),
                                  st.one_of(st.sampled_from(["b0", "0", "1abc", "a.b", "a-", "é", "a:b", "_x"]),
                                            st.text(max_size=6))).filter(lambda node: node is not None))
subjects = st.one_of(iris, blank_nodes)
triple_terms = st.recursive(
    st.builds(ox.Triple, subjects, iris, st.one_of(iris, blank_nodes, literals)),
    lambda inner: st.builds(ox.Triple, subjects, iris, inner), max_leaves=3)
terms = st.one_of(iris, blank_nodes, literals, triple_terms)


class Row(dict):
    """A solution as the writers read it: ``row[variable]`` is a term or None."""

    def __missing__(self, key):
        return None


VARIABLES = ["a", "b", "c"]
solutions = st.lists(st.builds(lambda values: Row({v: t for v, t in zip(VARIABLES, values) if t is not None}),
                               st.lists(st.one_of(st.none(), terms), min_size=3, max_size=3)), max_size=4)
triples = st.lists(st.builds(ox.Triple, subjects, iris, st.one_of(iris, blank_nodes, literals, triple_terms)),
                   min_size=1, max_size=4)

# ---------------------------------------------------------------------------------------------------------
# What the specifications allow each format to refuse
# ---------------------------------------------------------------------------------------------------------


def parts(term):
    yield term
    if isinstance(term, ox.Triple):
        for part in term:
            yield from parts(part)


def no_rdf_term(term) -> bool:
    """A literal typed rdf:langString without a language tag (or rdf:dirLangString without a direction)."""
    return isinstance(term, ox.Literal) and (
        term.datatype.value == RDF + "langString" and not term.language
        or term.datatype.value == RDF + "dirLangString" and term.direction is None)


def not_xml_char(term) -> bool:
    values = [term.value] if isinstance(term, (ox.Literal, ox.NamedNode, ox.BlankNode)) else []
    return any(not (c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000")
               for value in values for c in value)


def may_refuse(name: str, all_terms: list, predicates: list = ()) -> bool:
    """Whether the format ``name`` may refuse an answer holding these terms."""
    if any(no_rdf_term(t) for t in all_terms):
        return True
    triple = any(isinstance(t, ox.Triple) for t in all_terms)
    if name in ("csv", "csv-excel", "jsonld"):
        return triple
    if name == "xml":
        return any(not_xml_char(t) for t in all_terms)
    if name == "rdfxml":  # XML characters; predicates that end in no plain XML name (exact cases: by example)
        return any(not_xml_char(t) for t in all_terms) or any(
            not PLAIN_LOCAL_NAME.search(p.value) or p.value.startswith((RDF, "http://www.w3.org/2000/xmlns/"))
            for p in predicates)
    return False  # JSON, TSV and the Turtle family hold every RDF term


PLAIN_LOCAL_NAME = re.compile(r"[/#:][A-Za-z_][A-Za-z0-9_.\-]*\Z")


# ---------------------------------------------------------------------------------------------------------
# Strict parsers and comparison up to blank node labels
# ---------------------------------------------------------------------------------------------------------


def strict_xml(data: bytes) -> None:
    """expat with namespaces: refuses characters outside XML 1.0 Char and element names that are no QName."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.Parse(data, True)
    ET.fromstring(data)


def same_rows(expected: list, got: list) -> None:
    """Row by row, term by term, with one consistent renaming of blank nodes."""
    names: dict[str, str] = {}

    def same(a, b):
        if isinstance(a, ox.BlankNode) and isinstance(b, ox.BlankNode):
            assert names.setdefault(a.value, b.value) == b.value, "a blank node renamed inconsistently"
        elif isinstance(a, ox.Triple) and isinstance(b, ox.Triple):
            for x, y in zip(a, b):
                same(x, y)
        else:
            assert a == b
    assert len(expected) == len(got)
    for row, parsed in zip(expected, got):
        for v in VARIABLES:
            same(row[v], parsed[v])
    assert len(set(names.values())) == len(names), "two blank nodes merged"


def isomorphic(left, right) -> bool:
    """Whether two small graphs are equal up to a one-to-one renaming of blank nodes (also inside triple terms),
    by backtracking. (Oxigraph's canonicalisation does not always break ties between blank nodes inside triple
    terms, so it cannot be the reference here.)"""
    left, right = list(set(left)), list(set(right))
    if len(left) != len(right):
        return False

    def unify(a, b, forward: dict, backward: dict) -> bool:
        if isinstance(a, ox.BlankNode) and isinstance(b, ox.BlankNode):
            if a in forward or b in backward:
                return forward.get(a) == b and backward.get(b) == a
            forward[a], backward[b] = b, a
            return True
        if isinstance(a, ox.Triple) and isinstance(b, ox.Triple):
            return all(unify(x, y, forward, backward) for x, y in zip(a, b))
        return a == b

    def match(i: int, used: frozenset, forward: dict, backward: dict) -> bool:
        if i == len(left):
            return True
        for j, candidate in enumerate(right):
            if j not in used:
                f, b = dict(forward), dict(backward)
                if unify(left[i], candidate, f, b) and match(i + 1, used | {j}, f, b):
                    return True
        return False
    return match(0, frozenset(), {}, {})


def same_csv(rows: list, table: list[list[str]]) -> None:
    """CSV keeps strings: IRIs and literal values as they are, blank nodes as _:label (renamed consistently)."""
    assert len(table) == len(rows) and all(len(line) == len(VARIABLES) for line in table)
    names: dict[str, str] = {}
    for row, line in zip(rows, table):
        for v, cell in zip(VARIABLES, line):
            term = row[v]
            if isinstance(term, ox.BlankNode):
                assert cell.startswith("_:") and names.setdefault(term.value, cell) == cell
            else:
                assert cell == ("" if term is None else term.value)
    assert len(set(names.values())) == len(names), "two blank nodes merged"


# ---------------------------------------------------------------------------------------------------------
# The writers, property-tested
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RESULT_FORMATS))
@SETTINGS
@given(rows=solutions)
@example(rows=[Row(a=ox.Triple(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c")))])
@example(rows=[Row(a=ox.Literal("\x01"), b=ox.Literal("\x00"), c=ox.Literal("\ufffe"))])
@example(rows=[Row(a=ox.Literal("a\r\nb\rc\td"), b=ox.BlankNode("1abc"))])
def test_results_writers_write_what_a_strict_parser_reads_back_or_refuse(name, rows):
    fmt = RESULT_FORMATS[name]
    all_terms = [p for row in rows for t in row.values() for p in parts(t)]
    try:
        data = write_solutions(VARIABLES, rows, fmt)
    except NotRepresentable as refused:
        event(f"refused: {str(refused).split(': ')[1][:40]}")
        assert may_refuse(name, all_terms), f"{name} refused what it can hold: {refused}"
        assert fmt.title in str(refused) and fmt.media_type in str(refused)
        return
    assert not any(no_rdf_term(t) for t in all_terms)
    text = data.decode("utf-8")  # strict UTF-8
    if name == "json":
        json.loads(text, strict=True)
    if name == "xml":
        strict_xml(data)
    if name == "csv-excel":  # the same CSV after a byte-order mark, for spreadsheet programs
        assert text.startswith("\ufeff") and write_solutions(VARIABLES, rows, RESULT_FORMATS["csv"]) == data[3:]
        return
    if name == "csv":
        table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        assert table[0] == VARIABLES and data.endswith(b"\r\n")
        same_csv(rows, table[1:])
        return
    if name == "tsv":
        lines = text.split("\n")
        assert lines[-1] == "" and all(line.count("\t") == len(VARIABLES) - 1 for line in lines[:-1])
    parsed = ox.parse_query_results(data, format=RESULTS_PARSERS[name])
    assert [v.value for v in parsed.variables] == VARIABLES
    same_rows(rows, list(parsed))


@pytest.mark.parametrize("name", list(RDF_FORMATS))
@SETTINGS
@given(graph=triples)
@example(graph=[ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("http://example.org/p/"), ox.Literal("o"))])
@example(graph=[ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("http://example.org/p1/2"), ox.Literal("o"))])
@example(graph=[ox.Triple(ox.BlankNode("1abc"), ox.NamedNode("http://example.org/p"), ox.Literal("a\r\nb\rc"))])
@example(graph=[ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"),
                          ox.Triple(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c")))])
def test_rdf_writers_write_what_a_strict_parser_reads_back_or_refuse(name, graph):
    fmt = RDF_FORMATS[name]
    all_terms = [p for t in graph for term in t for p in parts(term)]
    predicates = [t.predicate for t in all_terms if isinstance(t, ox.Triple)] + [t.predicate for t in graph]
    try:
        data = write_triples(graph, fmt, PREFIX_MAP)
    except NotRepresentable as refused:
        event(f"refused: {str(refused).split(': ')[1][:40]}")
        assert may_refuse(name, all_terms, predicates), f"{name} refused what it can hold: {refused}"
        assert fmt.title in str(refused) and fmt.media_type in str(refused)
        return
    assert not any(no_rdf_term(t) for t in all_terms)
    data.decode("utf-8")
    if name == "rdfxml":
        strict_xml(data)
    if name == "jsonld":
        json.loads(data, strict=True)
    assert isomorphic((q.triple for q in ox.parse(data, format=fmt.rdf_format)), graph)


@pytest.mark.parametrize("name", list(RESULT_FORMATS))
@pytest.mark.parametrize("value", [True, False])
def test_boolean_writers(name, value):
    data = write_boolean(value, RESULT_FORMATS[name])
    if name in ("json", "xml"):
        assert bool(ox.parse_query_results(data, format=RESULTS_PARSERS[name])) is value
    if name == "xml":
        strict_xml(data)
    if name == "tsv":  # a one-variable table whose value is the Turtle boolean, as Jena writes it
        assert [r["_askResult"].value for r in ox.parse_query_results(data, format=ox.QueryResultsFormat.TSV)] == \
            [str(value).lower()]
    if name in ("csv", "csv-excel"):
        assert list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), strict=True)) == \
            [["_askResult"], [str(value).lower()]]
    if name == "csv-excel":
        assert data.startswith("\ufeff".encode())


def test_refusals_by_example():
    """What each format refuses, named in the message, and what it keeps."""
    triple = ox.Triple(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c"))
    with pytest.raises(NotRepresentable, match=r"SPARQL results CSV \(text/csv\).*triple term"):
        write_solutions(["t"], [Row(t=triple)], RESULT_FORMATS["csv"])
    with pytest.raises(NotRepresentable, match=r"JSON-LD \(application/ld\+json\).*triple term"):
        write_triples([ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), triple)], RDF_FORMATS["jsonld"])
    for char in ("\x00", "\x01", "\ufffe", "\uffff"):
        with pytest.raises(NotRepresentable, match=rf"SPARQL results XML.*U\+{ord(char):04X}.*XML 1.0"):
            write_solutions(["l"], [Row(l=ox.Literal(f"a{char}b"))], RESULT_FORMATS["xml"])
        with pytest.raises(NotRepresentable, match=rf"RDF/XML.*U\+{ord(char):04X}"):
            write_triples([ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("http://e.example/p"), ox.Literal(char))],
                          RDF_FORMATS["rdfxml"])
    for predicate in ("http://e.example/p/", "http://e.example/p#", "http://e.example/p/1", "urn:x:12",
                      "http://www.w3.org/2000/xmlns/a", RDF + "li", RDF + "Description"):
        with pytest.raises(NotRepresentable, match="RDF/XML"):
            write_triples([ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode(predicate), ox.Literal("o"))],
                          RDF_FORMATS["rdfxml"])
    bad = ox.Literal("a", datatype=ox.NamedNode(RDF + "langString"))
    for fmt in [*RESULT_FORMATS.values()]:
        with pytest.raises(NotRepresentable, match="no RDF term"):
            write_solutions(["x"], [Row(x=bad)], fmt)
    assert isinstance(NotRepresentable("x"), NotAcceptable)
    # What the formats keep: every character in JSON and TSV, CR in XML, triple terms in TSV as <<( … )>>
    hostile = ox.Literal("\x00\x01\ufffe\r\n\t\"\\")
    for name in ("json", "tsv"):
        data = write_solutions(["x", "t"], [Row(x=hostile, t=triple)], RESULT_FORMATS[name])
        assert [list(r) for r in ox.parse_query_results(data, format=RESULTS_PARSERS[name])] == [[hostile, triple]]
    assert b"<<( <urn:a> <urn:b> <urn:c> )>>" in write_solutions(["t"], [Row(t=triple)], RESULT_FORMATS["tsv"])
    data = write_solutions(["x"], [Row(x=ox.Literal("a\r\nb"))], RESULT_FORMATS["xml"])
    assert b"&#13;" in data and list(ox.parse_query_results(data, format=ox.QueryResultsFormat.XML))[0]["x"].value \
        == "a\r\nb"


def test_lone_surrogates_cannot_reach_a_writer():
    """Python strings may hold lone surrogates, but pyoxigraph terms cannot, so no writer ever meets one."""
    for make in (ox.Literal, ox.NamedNode, ox.BlankNode):
        with pytest.raises((ValueError, TypeError, UnicodeEncodeError)):
            make("a\ud800b" if make is not ox.NamedNode else "http://e.example/\ud800")


# ---------------------------------------------------------------------------------------------------------
# Through the server: the report's examples
# ---------------------------------------------------------------------------------------------------------

TRIPLE_SELECT = "SELECT (TRIPLE(<urn:a>,<urn:b>,<urn:c>) AS ?t) {}"
TRIPLE_CONSTRUCT = "CONSTRUCT { <urn:s> <urn:p> ?t } WHERE { BIND(TRIPLE(<urn:a>,<urn:b>,<urn:c>) AS ?t) }"
CONTROL_SELECT = 'SELECT ?l WHERE { VALUES ?l { "a\\u0001b" "nul\\u0000" "x\\uFFFEy" } }'


@pytest.fixture(scope="module")
def endpoint(app_server):
    return app_server.url + "/sparql"


@pytest.mark.parametrize("query,accept,why", [
    (TRIPLE_SELECT, "text/csv", "triple term"),
    (TRIPLE_CONSTRUCT, "application/ld+json", "triple term"),
    (CONTROL_SELECT, "application/sparql-results+xml", "U+0001"),
    ("CONSTRUCT { <urn:s> <http://example.org/p/> 1 } WHERE {}", "application/rdf+xml", "XML name"),
    ("CONSTRUCT { <urn:s> <http://example.org/p/1> 1 } WHERE {}", "application/rdf+xml", "XML name"),
    ('CONSTRUCT { <urn:s> <urn:p> ?o } WHERE { BIND(STRDT("a", rdf:langString) AS ?o) }', "text/turtle",
     "no RDF term"),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_answer_the_format_cannot_hold_is_406_naming_format_and_reason(endpoint, query, accept, why, method):
    status, headers, body = call(endpoint, query, method=method, accept=accept)
    assert status == 406, body
    message = body.decode()
    assert accept in message and why in message and "cannot hold this answer" in message
    assert headers["Content-Type"].startswith("text/plain") and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("query,accept,check", [
    (TRIPLE_SELECT, "application/sparql-results+json", lambda b: json.loads(b)["results"]["bindings"][0]["t"]["type"]
     == "triple"),
    (TRIPLE_SELECT, "text/tab-separated-values", lambda b: b"<<( <urn:a> <urn:b> <urn:c> )>>" in b),
    (TRIPLE_SELECT, "application/sparql-results+xml", lambda b: strict_xml(b) is None and b"<triple>" in b),
    (TRIPLE_CONSTRUCT, "text/turtle", lambda b: len(list(ox.parse(b, format=ox.RdfFormat.TURTLE))) == 1),
    (TRIPLE_CONSTRUCT, "application/rdf+xml", lambda b: strict_xml(b) is None and len(list(
        ox.parse(b, format=ox.RdfFormat.RDF_XML))) == 1),
    (CONTROL_SELECT, "application/sparql-results+json", lambda b: sorted(
        r["l"]["value"] for r in json.loads(b)["results"]["bindings"]) == ["a\x01b", "nul\x00", "x\ufffey"]),
    (CONTROL_SELECT, "text/tab-separated-values", lambda b: sorted(r["l"].value for r in ox.parse_query_results(
        b, format=ox.QueryResultsFormat.TSV)) == ["a\x01b", "nul\x00", "x\ufffey"]),
    (CONTROL_SELECT, "text/csv", lambda b: sorted(r[0] for r in list(csv.reader(io.StringIO(
        b.decode(), newline=""), strict=True))[1:]) == ["a\x01b", "nul\x00", "x\ufffey"]),
])
def test_formats_that_can_hold_the_answer_still_answer_it(endpoint, query, accept, check):
    status, headers, body = call(endpoint, query, accept=accept)
    assert status == 200 and headers["Content-Type"].startswith(accept), body
    assert check(body)


def test_void_as_rdfxml_and_a_refusal_asked_by_the_format_parameter(app_server):
    """VoID goes through the RDF/XML checks (expat) and is served; `format=csv` refuses a triple term as Accept does."""
    status, headers, _ = call(app_server.url + "/.well-known/void", accept="application/rdf+xml")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
    status, _, body = call(app_server.url + "/sparql?" + urllib.parse.urlencode({"query": TRIPLE_SELECT, "format": "csv"}))
    assert status == 406 and b"triple term" in body


def test_a_refusal_raised_in_the_server_process_is_406_on_sparql_and_on_pages():
    from cmc_kg.namespaces import GRAPH, ID

    store = ox.Store()
    for graph in (ox.NamedNode(str(GRAPH) + "g"), ox.DefaultGraph()):  # load_store merges into the default graph
        store.add(ox.Quad(ox.NamedNode(str(ID) + "x"), ox.NamedNode("http://example.org/p/"), ox.Literal("o"), graph))
    client = in_process_server(store, "http://one-triple.test", cache_entries=0).client
    answer = client.get("/sparql", query_string={"query": TRIPLE_SELECT}, headers={"Accept": "text/csv"})
    assert answer.status_code == 406 and b"triple term" in answer.data
    answer = client.get("/id/x", headers={"Accept": "application/rdf+xml"})
    assert answer.status_code == 406 and b"RDF/XML" in answer.data and b"XML name" in answer.data
    assert answer.headers["X-Content-Type-Options"] == "nosniff" and "Accept" in answer.headers["Vary"]
    answer = client.get("/id/x", headers={"Accept": "text/turtle"})
    assert answer.status_code == 200 and len(list(ox.parse(answer.data, format=ox.RdfFormat.TURTLE))) == 1


def test_the_command_line_reports_a_refusal_without_a_traceback(built):
    from click.testing import CliRunner

    from cmc_kg.cli import main

    result = CliRunner().invoke(main, ["query", "--format", "csv", "--build-dir", str(built[0].build_dir),
                                       TRIPLE_SELECT])
    assert result.exit_code == 1 and "triple term" in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


def test_turtle_declares_exactly_the_prefixes_its_iris_use():
    country, cmc = PREFIX_MAP["country"], PREFIX_MAP["cmc"]
    triples = [ox.Triple(ox.NamedNode(country + "FRA"), ox.NamedNode(cmc + "isoAlpha3"), ox.Literal("FRA")),
               ox.Triple(ox.BlankNode("b1"), ox.NamedNode("http://example.org/unprefixed"),
                         ox.Literal("1", datatype=ox.NamedNode(PREFIX_MAP["xsd"] + "integer")))]
    text = write_triples(triples, RDF_FORMATS["turtle"], PREFIX_MAP).decode("utf-8")
    declared = set(re.findall(r"^@prefix (\w*):", text, re.MULTILINE))
    expected = {p for p, ns in PREFIX_MAP.items()
                if any(iri.startswith(ns) for iri in (country + "FRA", cmc + "isoAlpha3", PREFIX_MAP["xsd"] + "integer"))}
    assert {"country", "cmc", "xsd"} <= declared == expected
    assert "_:b1" in text and len(list(ox.parse(text.encode(), format=ox.RdfFormat.TURTLE))) == 2
