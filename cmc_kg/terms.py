"""One home for writing the project's IRIs short, and for writing the Turtle files the commands generate.

Three uses want three forms of the same prefixed name: a page shows ``country:FRA`` or else the whole IRI
(:func:`compact`); query text needs ``country:FRA`` or else ``<iri>`` (:func:`curie`); Turtle can write any
local part with escapes (:class:`TurtleWriter`). All take the longest of the project's namespaces
(cmc_kg/namespaces.py, generated from the ontology) that gives a name.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from rdflib import Literal, URIRef

from .namespaces import ID, PREFIXES, RDF

__all__ = ["prefixed", "compact", "curie", "entity_name", "TurtleWriter"]

_BY_LENGTH = sorted(((prefix, str(ns)) for prefix, ns in PREFIXES.items()), key=lambda item: -len(item[1]))
# A local part written as is, in SPARQL, Turtle and on pages: letters, digits, _ and -, dots only inside.
_PLAIN_LOCAL = re.compile(r"(?!-)[\w-]+(?:\.[\w-]+)*")
_LOCAL_NAME_ESCAPES = re.compile(r"([/~!$&'()*+,;=?#@%])")
# The entity namespaces (country:, org:, treaty: …), which the curation files use.
ENTITY_PREFIXES = frozenset(p for p, ns in PREFIXES.items() if str(ns).startswith(str(ID)) and ns != ID)


def prefixed(iri: str, escape: bool = False, prefixes: Iterable[str] | None = None) -> str | None:
    """``prefix:local`` for an IRI in one of the project's namespaces (or of ``prefixes``), else None.

    Without ``escape`` only a plain local part is written; with it, Turtle's local-name escapes write any.

    >>> prefixed(str(PREFIXES["action"]) + "ccm/AFG/signature", escape=True)
    'action:ccm\\\\/AFG\\\\/signature'
    """
    for prefix, namespace in _BY_LENGTH:
        if prefixes is not None and prefix not in prefixes:
            continue
        if iri.startswith(namespace) and len(iri) > len(namespace):
            local = iri[len(namespace):]
            if escape:
                return f"{prefix}:" + _LOCAL_NAME_ESCAPES.sub(r"\\\1", local)
            if _PLAIN_LOCAL.fullmatch(local):
                return f"{prefix}:{local}"
    return None


def compact(iri: str) -> str:
    """What a page shows: the prefixed name, else the IRI."""
    return prefixed(iri) or iri


def curie(iri: str) -> str:
    """What query text holds: the prefixed name, else ``<iri>``."""
    return prefixed(iri) or f"<{iri}>"


def entity_name(iri: str) -> str:
    """An entity's name in the curation files (``country:FRA``); ValueError for anything else."""
    name = prefixed(iri, prefixes=ENTITY_PREFIXES)
    if name is None:
        raise ValueError(f"{iri} is not a cmc-kg entity")
    return name


def _turtle_name(iri: URIRef) -> str:
    return prefixed(str(iri), escape=True) or f"<{iri}>"


def _turtle_term(value) -> str:
    if isinstance(value, URIRef):
        return _turtle_name(value)
    literal = value if isinstance(value, Literal) else Literal(value)
    text = literal.n3()
    if literal.datatype:
        text = text.rsplit("^^", 1)[0] + "^^" + _turtle_name(literal.datatype)
    return text


class TurtleWriter:
    """Statements grouped by subject, written sorted (so a regenerated file changes only where its data did),
    with the prefixes they use."""

    def __init__(self):
        self.statements: dict[URIRef, set[tuple[URIRef, object]]] = defaultdict(set)

    def add(self, subject: URIRef, predicate: URIRef, value) -> None:
        self.statements[subject].add((predicate, value))

    def render(self, header: str) -> str:
        body = []
        for subject in sorted(self.statements):
            pairs = sorted(self.statements[subject],
                           key=lambda pv: (pv[0] != RDF.type, str(pv[0]), _turtle_term(pv[1])))
            lines = [f"    {'a' if p == RDF.type else _turtle_name(p)} {_turtle_term(v)}" for p, v in pairs]
            body.append(_turtle_name(subject) + "\n" + " ;\n".join(lines) + " .\n")
        text = "\n".join(body)
        used = sorted({p for p in PREFIXES if re.search(rf"(^|[\s(^]){re.escape(p)}:", text, re.M)})
        prefixes = "".join(f"@prefix {p}: <{PREFIXES[p]}> .\n" for p in used)
        return header + prefixes + "\n" + text
