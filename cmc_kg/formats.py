"""The one registry of serialisations: SPARQL results (CSV for spreadsheets too), RDF, and the other files
published (GraphML, the gzipped dump), by name, media type and file extension.

The server's content negotiation, the `format` parameter, the command line (`query --format`, `export
--format`), the exports (cmc_kg/export.py: RDF, the CSV tables in both CSV variants, GraphML) and the dumps
page all read it, so a format is added here once. SELECT results are written by this module (not by Oxigraph) because an
answer may be cut at the row cap, and only a list of solutions can be cut.

Every writer either returns a document that a strict parser of its format accepts, holding the same terms
(as far as the format keeps them: CSV keeps only strings; blank node labels may be renamed), or raises
:class:`NotRepresentable`, a :class:`NotAcceptable` that the server answers with 406. What each format
refuses, and why:

* every format: a literal typed ``rdf:langString`` without a language tag, or ``rdf:dirLangString`` without
  a base direction (``STRDT("a", rdf:langString)``): it is no RDF term (RDF 1.2 Concepts), and the Turtle
  family and TSV cannot be parsed back with one.
* CSV: triple terms. SPARQL 1.1 CSV has none, and the 1.2 drafts' ``<< s p o >>`` form is written without
  term syntax, so it cannot be told apart from a string; JSON, XML and TSV results carry them.
* JSON-LD: triple terms (JSON-LD 1.1 has none); the other RDF formats carry them.
* XML results and RDF/XML: characters outside the XML 1.0 ``Char`` production (controls other than tab,
  LF and CR; U+FFFE, U+FFFF). XML 1.0 cannot carry them at all, not even as character references, so the
  answer is refused rather than altered: a dropped or replaced character would be a silently different
  value. JSON, TSV and the Turtle family carry every character. CR is written ``&#13;`` so that it
  survives XML's line-end normalisation.
* RDF/XML: a predicate whose IRI does not end in an XML name (``…/``, ``…#``, ``…/1``), which cannot be
  written as an element, and the syntax terms RDF/XML reserves (``rdf:li``, ``rdf:Description``…). Blank
  nodes are renamed when a label is not an XML NCName (``rdf:nodeID``), and the document is checked with
  expat (namespace-aware) before it is sent.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
import xml.parsers.expat
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

__all__ = ["Format", "UTF8_BOM", "RESULT_FORMATS", "RDF_FORMATS", "FILE_FORMATS", "by_name_or_type", "write_solutions",
           "write_boolean", "write_triples", "NotAcceptable", "NotRepresentable"]


class NotAcceptable(Exception):
    """No format the client accepts can hold the answer; the server answers 406.

    Raised with the kind of answer ('results', 'graph') when the client accepts no format of that kind, or
    as :class:`NotRepresentable`, with a full message, when the chosen format cannot hold this answer.
    """


class NotRepresentable(NotAcceptable):
    """This format cannot hold this answer (a triple term in CSV, a control character in XML, …).

    The message names the format and the reason. Being a :class:`NotAcceptable`, it is reported by the query
    workers as 'not-acceptable' and answered with 406 by the server.
    """


@dataclass(frozen=True)
class Format:
    """A serialisation: its short name, its media types (the first is what we send), its file extension."""

    name: str
    media_types: tuple[str, ...]
    extension: str
    rdf_format: ox.RdfFormat | None = None
    title: str = ""
    byte_order_mark: bool = False  # written first, for programs that take UTF-8 only with one (UTF8_BOM)

    @property
    def media_type(self) -> str:
        return self.media_types[0]


RESULT_FORMATS = {f.name: f for f in (
    Format("json", ("application/sparql-results+json", "application/json"), ".srj", title="SPARQL results JSON"),
    Format("xml", ("application/sparql-results+xml", "application/xml", "text/xml"), ".srx", title="SPARQL results XML"),
    Format("csv", ("text/csv",), ".csv", title="SPARQL results CSV"),
    Format("tsv", ("text/tab-separated-values",), ".tsv", title="SPARQL results TSV"),
    # CSV that spreadsheet programs open as UTF-8: the same bytes after a byte-order mark (cmc_kg/export.py)
    Format("csv-excel", ("text/csv; charset=utf-8; header=present",), ".csv", title="CSV for spreadsheets",
           byte_order_mark=True),
)}

RDF_FORMATS = {f.name: f for f in (
    Format("turtle", ("text/turtle", "application/x-turtle"), ".ttl", ox.RdfFormat.TURTLE, "Turtle"),
    Format("ntriples", ("application/n-triples", "text/plain"), ".nt", ox.RdfFormat.N_TRIPLES, "N-Triples"),
    Format("rdfxml", ("application/rdf+xml",), ".rdf", ox.RdfFormat.RDF_XML, "RDF/XML"),
    Format("jsonld", ("application/ld+json",), ".jsonld", ox.RdfFormat.JSON_LD, "JSON-LD"),
    Format("trig", ("application/trig",), ".trig", ox.RdfFormat.TRIG, "TriG"),
    Format("nquads", ("application/n-quads",), ".nq", ox.RdfFormat.N_QUADS, "N-Quads"),
)}

# Files published that are neither SPARQL results nor RDF: the GraphML export, the gzipped dump.
FILE_FORMATS = {f.name: f for f in (
    Format("graphml", ("application/graphml+xml",), ".graphml", title="GraphML"),
    Format("gzip", ("application/gzip",), ".gz", title="gzip"),
)}

_CSV = ("csv", "csv-excel")
# Spreadsheet programs (Excel, and LibreOffice by default) read a CSV file as UTF-8 only when it starts with a
# byte-order mark; without one `Côte d'Ivoire` opens as `CÃ´te d'Ivoire`. csv-excel has it, csv does not (RFC 4180
# and SPARQL clients expect none; Python's "utf-8-sig" reads both).
UTF8_BOM = "\ufeff"

# Other names clients send (SPARQLWrapper, Virtuoso's and Fuseki's `format` values), each with the formats it
# names, in the order tried: "xml" and "json" name a results format for SELECT and ASK and an RDF format for
# CONSTRUCT and DESCRIBE, as on Virtuoso and Oxigraph; N3 is answered in Turtle, the subset of N3 in use.
_ALIASES = {"ttl": ("turtle",), "nt": ("ntriples",), "n-triples": ("ntriples",), "xml-rdf": ("rdfxml",),
            "rdf": ("rdfxml",), "rdf+xml": ("rdfxml",), "json-ld": ("jsonld",), "nq": ("nquads",),
            "n-quads": ("nquads",), "srj": ("json",), "srx": ("xml",), "xml": ("xml", "rdfxml"),
            "json": ("json", "jsonld"), "n3": ("turtle",), "text/n3": ("turtle",), "text/rdf+n3": ("turtle",),
            "application/n3": ("turtle",), "application/turtle": ("turtle",), "application/x-json+ld": ("jsonld",)}


def by_name_or_type(value: str, table: dict[str, Format]) -> Format | None:
    """Find a format by its name, an alias, or one of its media types.

    >>> by_name_or_type("text/csv", RESULT_FORMATS).name
    'csv'
    >>> by_name_or_type("ttl", RDF_FORMATS).name
    'turtle'
    >>> by_name_or_type("xml", RESULT_FORMATS).name, by_name_or_type("xml", RDF_FORMATS).name
    ('xml', 'rdfxml')
    """
    value = value.strip().lower()
    for name in (value, *_ALIASES.get(value, ())):
        if name in table:
            return table[name]
    return next((f for f in table.values() if value in f.media_types), None)


_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_ITS = "http://www.w3.org/2005/11/its"

# Characters XML 1.0 cannot carry, even as character references (outside its Char production).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_XML_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")  # the same, in UTF-8
# Blank node labels every syntax accepts (a subset of Turtle's BLANK_NODE_LABEL), and of XML's NCName
# (rdf:nodeID); an answer with any other label gets its blank nodes renamed b0, b1, ….
_TURTLE_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])?")
_NCNAME_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _refuse(fmt: Format, reason: str) -> NotRepresentable:
    return NotRepresentable(f"{fmt.title or fmt.name} ({fmt.media_type}) cannot hold this answer: {reason}; "
                            "ask for another format")


def _show(term) -> str:
    text = str(term)
    return text if len(text) <= 80 else f"{text[:60]}…{text[-16:]}"


def _parts(term) -> Iterator:
    """A term and, for a triple term, every term inside it."""
    yield term
    if isinstance(term, ox.Triple):
        for part in (term.subject, term.predicate, term.object):
            yield from _parts(part)


def _check_terms(terms: Iterable, fmt: Format) -> None:
    """Refuse what no format can hold, and triple terms where the format has none."""
    for term in terms:
        if isinstance(term, ox.Literal):
            datatype = term.datatype.value
            if datatype == _RDF + "langString" and not term.language or \
                    datatype == _RDF + "dirLangString" and term.direction is None:
                raise _refuse(fmt, f"it holds {_show(term)}, a literal typed {datatype.split('#')[1]} without a "
                                   "language tag or base direction, which is no RDF term")
        elif isinstance(term, ox.Triple) and fmt.name in (*_CSV, "jsonld"):
            raise _refuse(fmt, "it holds a triple term, which this format has no syntax for "
                               + ("(JSON, XML or TSV results carry them)" if fmt.name in _CSV else
                                  "(Turtle, N-Triples, TriG, N-Quads or RDF/XML carry them)"))


def _labeller(terms: Iterable, valid: re.Pattern) -> Callable[[ox.BlankNode], str]:
    """The label each blank node is written with: its own, unless some label is not ``valid`` in the
    format, in which case all are renamed b0, b1, … (labels mean nothing outside one answer)."""
    labels = dict.fromkeys(t.value for t in terms if isinstance(t, ox.BlankNode))
    if all(valid.fullmatch(label) for label in labels):
        return lambda node: node.value
    renamed = {label: f"b{n}" for n, label in enumerate(labels)}
    return lambda node: renamed[node.value]


def _not_xml(char: str, fmt: Format) -> NotRepresentable:
    return _refuse(fmt, f"a value holds the character U+{ord(char):04X}, which XML 1.0 cannot carry, not even as "
                        "a character reference (JSON, TSV or Turtle carry it)")


def _json_term(term, label) -> dict:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": label(term)}
    if isinstance(term, ox.Triple):
        return {"type": "triple", "value": {part: _json_term(getattr(term, part), label)
                                            for part in ("subject", "predicate", "object")}}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
        if term.direction is not None:
            out["its:dir"] = str(term.direction)
    elif term.datatype.value != _XSD_STRING:
        out["datatype"] = term.datatype.value
    return out


def _xml_text(value: str) -> str:
    """Character data: CR as a reference (a raw CR would be read back as LF), as are tab and LF, and spaces at
    either end (some readers, Oxigraph's among them, trim raw whitespace around a value)."""
    text = escape(value, {"\r": "&#13;", "\t": "&#9;", "\n": "&#10;"})
    core = text.strip(" ")
    if core == text:
        return text
    lead = len(text) - len(text.lstrip(" "))
    return "&#32;" * lead + core + "&#32;" * (len(text) - lead - len(core))


def _xml_term(term, label) -> str:
    if isinstance(term, ox.NamedNode):
        return f"<uri>{_xml_text(term.value)}</uri>"
    if isinstance(term, ox.BlankNode):
        return f"<bnode>{_xml_text(label(term))}</bnode>"
    if isinstance(term, ox.Triple):
        return ("<triple>" + "".join(f"<{part}>{_xml_term(getattr(term, part), label)}</{part}>"
                                     for part in ("subject", "predicate", "object")) + "</triple>")
    if term.language:
        direction = "" if term.direction is None else \
            f' xmlns:its="{_ITS}" its:version="2.0" its:dir={quoteattr(str(term.direction))}'
        return f"<literal xml:lang={quoteattr(term.language)}{direction}>{_xml_text(term.value)}</literal>"
    if term.datatype.value != _XSD_STRING:
        return f"<literal datatype={quoteattr(term.datatype.value)}>{_xml_text(term.value)}</literal>"
    return f"<literal>{_xml_text(term.value)}</literal>"


def _csv_value(term, label) -> str:
    if term is None:
        return ""
    if isinstance(term, ox.BlankNode):
        return "_:" + label(term)
    return term.value  # a triple term was refused before


def _tsv_term(term, label) -> str:
    """A term in Turtle syntax on one line: N-Triples escapes (tab, LF and CR as \\t, \\n, \\r), triple terms
    as RDF 1.2 ``<<( s p o )>>``."""
    if term is None:
        return ""
    if isinstance(term, ox.BlankNode):
        return "_:" + label(term)
    if isinstance(term, ox.Triple):
        return "<<( " + " ".join(_tsv_term(getattr(term, part), label)
                                 for part in ("subject", "predicate", "object")) + " )>>"
    return str(term)


def write_solutions(variables: list[str], solutions: list, fmt: Format) -> bytes:
    """SPARQL 1.1 results (JSON, XML, CSV or TSV; triple terms as SPARQL 1.2) of a list of Oxigraph solutions.

    Raises :class:`NotRepresentable` when the format cannot hold the answer (see the module's notes).
    """
    terms = [part for s in solutions for v in variables if s[v] is not None for part in _parts(s[v])]
    _check_terms(terms, fmt)
    label = _labeller(terms, _TURTLE_LABEL)
    if fmt.name == "json":
        bindings = [{v: _json_term(s[v], label) for v in variables if s[v] is not None} for s in solutions]
        return json.dumps({"head": {"vars": variables}, "results": {"bindings": bindings}},
                          ensure_ascii=False).encode("utf-8")
    if fmt.name == "xml":
        head = "".join(f"<variable name={quoteattr(v)}/>" for v in variables)
        rows = "".join("<result>" + "".join(f"<binding name={quoteattr(v)}>{_xml_term(s[v], label)}</binding>"
                                            for v in variables if s[v] is not None) + "</result>"
                       for s in solutions)
        document = (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head>{head}'
                    f"</head><results>{rows}</results></sparql>\n")
        bad = _NOT_XML_CHAR.search(document)
        if bad:
            raise _not_xml(bad.group(), fmt)
        return document.encode("utf-8")
    if fmt.name in _CSV:
        out = io.StringIO()
        if fmt.byte_order_mark:
            out.write(UTF8_BOM)
        writer = csv.writer(out, lineterminator="\r\n")  # quotes fields holding '"', ',', CR or LF (RFC 4180)
        writer.writerow(variables)
        writer.writerows([_csv_value(s[v], label) for v in variables] for s in solutions)
        return out.getvalue().encode("utf-8")
    lines = ["\t".join(f"?{v}" for v in variables)]
    lines += ["\t".join(_tsv_term(s[v], label) for v in variables) for s in solutions]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_boolean(value: bool, fmt: Format) -> bytes:
    """The answer to an ASK query in a results format."""
    if fmt.name == "json":
        return json.dumps({"head": {}, "boolean": value}).encode("utf-8")
    if fmt.name == "xml":
        return (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/>'
                f"<boolean>{str(value).lower()}</boolean></sparql>\n").encode("utf-8")
    if fmt.name in _CSV:
        return f"{UTF8_BOM if fmt.byte_order_mark else ''}_askResult\r\n{str(value).lower()}\r\n".encode("utf-8")
    return f"?_askResult\n{str(value).lower()}\n".encode("utf-8")


# XML 1.0 (fifth edition) name characters, as Oxigraph's RDF/XML writer reads them when it splits a
# predicate IRI into a namespace and an element name.
_NAME_START = ("A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d"
               "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff")
_NOT_NAME_CHAR = re.compile(f"[^{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f\u2040]|:")
_NAME_START_CHAR = re.compile(f"[{_NAME_START}]")


def _rdfxml_element_name(iri: str) -> tuple[str, str]:
    """(namespace, local name) as Oxigraph splits a predicate IRI: the local name starts at the first name-start
    character after the last character that is not a name character; empty when there is none."""
    cut = None
    for cut in _NOT_NAME_CHAR.finditer(iri):  # noqa: B007 (the last match is wanted)
        pass
    if cut is None:
        return iri, ""
    start = _NAME_START_CHAR.search(iri, cut.start())
    return (iri, "") if start is None else (iri[:start.start()], iri[start.start():])


def _rdfxml_checks(triples: list, fmt: Format) -> None:
    """Refuse predicates (of the triples and of triple terms) that Oxigraph would write as no element name."""
    predicates = {term.predicate for triple in triples for term in _parts(triple) if isinstance(term, ox.Triple)}
    for predicate in sorted(predicates, key=str):
        namespace, local = _rdfxml_element_name(predicate.value)
        if not local or namespace == "http://www.w3.org/2000/xmlns/":
            raise _refuse(fmt, f"the predicate {_show(predicate)} does not end in an XML name, so it cannot be "
                               "written as an element (Turtle, N-Triples or JSON-LD carry it)")


def _relabel(term, label):
    if isinstance(term, ox.BlankNode):
        return ox.BlankNode(label(term))
    if isinstance(term, ox.Triple):
        return ox.Triple(*(_relabel(getattr(term, part), label) for part in ("subject", "predicate", "object")))
    return term


def _starts_any(namespace: str, sorted_iris: list[str]) -> bool:
    """Whether an IRI starts with ``namespace``: the first one not below it does, if any does."""
    i = bisect.bisect_left(sorted_iris, namespace)
    return i < len(sorted_iris) and sorted_iris[i].startswith(namespace)


def write_triples(triples: list, fmt: Format, prefixes: dict[str, str] | None = None) -> bytes:
    """A CONSTRUCT or DESCRIBE answer in an RDF format; Turtle and TriG declare the prefixes they use.

    Raises :class:`NotRepresentable` when the format cannot hold the answer (see the module's notes).
    """
    terms = [part for triple in triples for term in triple for part in _parts(term)]
    _check_terms(terms, fmt)
    if fmt.name == "rdfxml":
        _rdfxml_checks(triples, fmt)
    label = _labeller(terms, _NCNAME_LABEL if fmt.name == "rdfxml" else _TURTLE_LABEL)
    if any(isinstance(t, ox.BlankNode) and label(t) != t.value for t in terms):  # else nothing to rename
        triples = [_relabel(triple, label) for triple in triples]
    used = None
    if prefixes and fmt.name in ("turtle", "trig"):
        iris = {term.value for triple in triples for term in triple if isinstance(term, ox.NamedNode)}
        iris |= {t.object.datatype.value for t in triples if isinstance(t.object, ox.Literal)}
        ordered = sorted(iris)
        used = {p: ns for p, ns in prefixes.items() if _starts_any(ns, ordered)}
    try:
        data: bytes = ox.serialize(triples, format=fmt.rdf_format, prefixes=used)  # type: ignore[assignment]  # no output: bytes
    except (OSError, ValueError) as refused:  # Oxigraph's writers refuse with io errors (InvalidInput)
        raise _refuse(fmt, str(refused)) from None
    if fmt.name == "rdfxml":
        data = _checked_rdfxml(data, fmt)
    return data


def _checked_rdfxml(data: bytes, fmt: Format) -> bytes:
    """Oxigraph's RDF/XML with CR written as a character reference (a raw CR would be read back as LF), refused
    when it holds a character XML cannot carry or is not namespace-well-formed XML."""
    bad = _NOT_XML_BYTES.search(data)
    if bad:
        raise _not_xml(bad.group().decode("utf-8"), fmt)
    data = data.replace(b"\r", b"&#13;")  # only literals can hold a CR: the markup has none
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        raise _refuse(fmt, f"the XML written would not be well-formed ({error})") from None
    return data
