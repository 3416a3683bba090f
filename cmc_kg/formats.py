"""The one registry of serialisations: SPARQL results and RDF, by name, media type and file extension.

The server's content negotiation, the `format` parameter, the command line and the exports all read it,
so a format is added here once. SELECT results are written by this module (not by Oxigraph) because an
answer may be cut at the row cap, and only a list of solutions can be cut.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

__all__ = ["Format", "RESULT_FORMATS", "RDF_FORMATS", "by_name_or_type", "write_solutions", "write_boolean",
           "write_triples"]


@dataclass(frozen=True)
class Format:
    """A serialisation: its short name, its media types (the first is what we send), its file extension."""

    name: str
    media_types: tuple[str, ...]
    extension: str
    rdf_format: ox.RdfFormat | None = None

    @property
    def media_type(self) -> str:
        return self.media_types[0]


RESULT_FORMATS = {f.name: f for f in (
    Format("json", ("application/sparql-results+json", "application/json"), ".srj"),
    Format("xml", ("application/sparql-results+xml", "application/xml", "text/xml"), ".srx"),
    Format("csv", ("text/csv",), ".csv"),
    Format("tsv", ("text/tab-separated-values",), ".tsv"),
)}

RDF_FORMATS = {f.name: f for f in (
    Format("turtle", ("text/turtle", "application/x-turtle"), ".ttl", ox.RdfFormat.TURTLE),
    Format("ntriples", ("application/n-triples", "text/plain"), ".nt", ox.RdfFormat.N_TRIPLES),
    Format("rdfxml", ("application/rdf+xml",), ".rdf", ox.RdfFormat.RDF_XML),
    Format("jsonld", ("application/ld+json",), ".jsonld", ox.RdfFormat.JSON_LD),
    Format("trig", ("application/trig",), ".trig", ox.RdfFormat.TRIG),
    Format("nquads", ("application/n-quads",), ".nq", ox.RdfFormat.N_QUADS),
)}

_ALIASES = {"ttl": "turtle", "nt": "ntriples", "n-triples": "ntriples", "xml-rdf": "rdfxml", "rdf": "rdfxml",
            "json-ld": "jsonld", "nq": "nquads", "n-quads": "nquads", "srj": "json", "srx": "xml"}


def by_name_or_type(value: str, table: dict[str, Format]) -> Format | None:
    """Find a format by its name, an alias, or one of its media types.

    >>> by_name_or_type("text/csv", RESULT_FORMATS).name
    'csv'
    >>> by_name_or_type("ttl", RDF_FORMATS).name
    'turtle'
    """
    value = value.strip().lower()
    value = _ALIASES.get(value, value)
    if value in table:
        return table[value]
    return next((f for f in table.values() if value in f.media_types), None)


def _plain(term) -> str:
    return "" if term is None else term.value


def _json_term(term) -> dict:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Triple):
        return {"type": "triple", "value": {"subject": _json_term(term.subject),
                                            "predicate": _json_term(term.predicate),
                                            "object": _json_term(term.object)}}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        out["datatype"] = term.datatype.value
    return out


def _xml_term(term) -> str:
    if isinstance(term, ox.NamedNode):
        return f"<uri>{escape(term.value)}</uri>"
    if isinstance(term, ox.BlankNode):
        return f"<bnode>{escape(term.value)}</bnode>"
    if isinstance(term, ox.Triple):
        return ("<triple>" + "".join(f"<{part}>{_xml_term(getattr(term, part))}</{part}>"
                                     for part in ("subject", "predicate", "object")) + "</triple>")
    if term.language:
        return f"<literal xml:lang={quoteattr(term.language)}>{escape(term.value)}</literal>"
    if term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        return f"<literal datatype={quoteattr(term.datatype.value)}>{escape(term.value)}</literal>"
    return f"<literal>{escape(term.value)}</literal>"


def write_solutions(variables: list[str], solutions: list, fmt: Format) -> bytes:
    """SPARQL 1.1 results (JSON, XML, CSV or TSV) of a list of Oxigraph solutions."""
    if fmt.name == "json":
        bindings = [{v: _json_term(s[v]) for v in variables if s[v] is not None} for s in solutions]
        return json.dumps({"head": {"vars": variables}, "results": {"bindings": bindings}},
                          ensure_ascii=False).encode("utf-8")
    if fmt.name == "xml":
        head = "".join(f"<variable name={quoteattr(v)}/>" for v in variables)
        rows = "".join("<result>" + "".join(f"<binding name={quoteattr(v)}>{_xml_term(s[v])}</binding>"
                                            for v in variables if s[v] is not None) + "</result>"
                       for s in solutions)
        return (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head>{head}</head>'
                f"<results>{rows}</results></sparql>\n").encode("utf-8")
    if fmt.name == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(variables)
        writer.writerows([_plain(s[v]) for v in variables] for s in solutions)
        return out.getvalue().encode("utf-8")
    lines = ["\t".join(f"?{v}" for v in variables)]
    lines += ["\t".join("" if s[v] is None else str(s[v]) for v in variables) for s in solutions]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_boolean(value: bool, fmt: Format) -> bytes:
    """The answer to an ASK query in a results format."""
    if fmt.name == "json":
        return json.dumps({"head": {}, "boolean": value}).encode("utf-8")
    if fmt.name == "xml":
        return (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/>'
                f"<boolean>{str(value).lower()}</boolean></sparql>\n").encode("utf-8")
    return f"_askResult\r\n{str(value).lower()}\r\n".encode("utf-8") if fmt.name == "csv" else \
        f"?_askResult\n{str(value).lower()}\n".encode("utf-8")


def write_triples(triples: list, fmt: Format, prefixes: dict[str, str] | None = None) -> bytes:
    """A CONSTRUCT or DESCRIBE answer in an RDF format; Turtle and TriG declare the prefixes they use."""
    used = None
    if prefixes and fmt.name in ("turtle", "trig"):
        iris = {term.value for triple in triples for term in triple if isinstance(term, ox.NamedNode)}
        iris |= {t.object.datatype.value for t in triples if isinstance(t.object, ox.Literal)}
        used = {p: ns for p, ns in prefixes.items() if any(iri.startswith(ns) for iri in iris)}
    return ox.serialize(triples, format=fmt.rdf_format, prefixes=used)
