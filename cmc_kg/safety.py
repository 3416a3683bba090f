"""Refuse, before evaluation, any query that could make the engine reach outside the build.

Oxigraph runs SERVICE over HTTP with no switch to turn it off (see FIELD-NOTES), and updates
would change a read-only graph. A scan of the query's tokens finds both: keywords cannot hide
inside strings, IRIs or comments once those are tokenised the way Oxigraph's parser does, and it
needs no parser lock. The scan follows Oxigraph where the grammar is subtle: a comment ends at CR
or LF, IRIs may hold \\u escapes, prefixed names may hold escapes such as ``\\#``, and inside an
expression a ``<`` after an operand is the less-than operator, not the start of an IRI (so in
``FILTER(1<'a>')`` the ``'`` opens a string). A ``<`` that could be read either way and whose two
readings would hide different text is refused as ambiguous. The worker processes are moreover
denied network sockets when no SERVICE is allowed (cmc_kg/engine.py), so a scan that missed a
SERVICE would still reach nothing.

FROM and FROM NAMED may only name graphs of the dataset: Oxigraph never fetches them, but a graph
that is not in the build can only be a mistake or a probe (``file:``, cloud metadata), and the
SPARQL engines `cmc-kg serve --store` can sit on may fetch them.
"""

from __future__ import annotations

import re
from typing import Callable, Collection, Iterator

from .namespaces import PREFIXES

__all__ = ["QueryRefused", "check_query", "check_graphs", "declares_dataset", "dataset_iris"]

_IRI = re.compile(r"""<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>""")
_PLX = r"%[0-9A-Fa-f]{2}|\\[_~.\-!$&'()*+,;=/?\#@%]"
_LOCAL = rf"(?:[\w\-.:]|{_PLX})*"
_TOKEN = re.compile(
    rf"""(?P<comment>\#[^\n\r]*)
      | (?P<string>\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''|"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*')
      | (?P<word>[?$]\w+|[A-Za-z_][\w\-.]*(?::{_LOCAL})?|:{_LOCAL})
      | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<other>\S)""",
    re.VERBOSE | re.DOTALL,
)
_SPACE = re.compile(r"\s*")
_UPDATE_KEYWORDS = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}
_PROLOGUE = {"PREFIX", "BASE"}
# Words after which, inside an expression, a term (not an operator) comes next.
_BEFORE_TERM = {"DISTINCT", "FILTER", "BIND", "IN", "NOT", "EXISTS", "AS", "BY", "ASC", "DESC", "HAVING",
                "SEPARATOR", "SELECT"}
# Words after which every "(" opens an expression until the group ends.
_EXPRESSION_CLAUSES = {"BY", "HAVING"}


class QueryRefused(Exception):
    """The query asks for something a read-only, closed endpoint does not do."""


def _scan(text: str) -> Iterator[tuple[str, str]]:
    """The query's tokens as (kind, text), comments and strings left out; raise QueryRefused on an ambiguous '<'.

    Kinds: 'iri', 'word' (keywords, variables, prefixed names), 'number', 'other' (punctuation).
    """
    frames: list[str] = []     # "{", "expr" or "group" for each open brace and parenthesis
    previous: tuple[str, str] = ("other", "")
    projection = clause = constraint = False
    position = 0
    while True:
        position = _SPACE.match(text, position).end()
        if position >= len(text):
            return
        in_expression = bool(frames) and frames[-1] == "expr"
        if text[position] == "<":
            iri = _IRI.match(text, position)
            kind, value = previous
            after_operand = kind in ("iri", "string", "number") or value in (")", "]") or (
                kind == "word" and value.upper() not in _BEFORE_TERM)
            if iri and not (in_expression and after_operand):
                position = iri.end()
                previous = ("iri", iri.group())
                yield previous
                continue
            if iri and ("'" in iri.group() or "#" in iri.group()):
                raise QueryRefused(f"ambiguous '<' at character {position}: after an operand it compares, but "
                                   f"{iri.group()} also reads as an IRI; put a space after '<' or drop ' and # "
                                   "from the IRI")
        match = _TOKEN.match(text, position)
        kind, value = match.lastgroup, match.group()
        position = match.end()
        if kind == "comment":
            continue
        upper = value.upper() if kind == "word" else value
        if kind == "word":
            if upper == "SELECT":
                projection = True
            elif upper in ("WHERE", "FROM"):
                projection = False
            elif upper in _EXPRESSION_CLAUSES:
                clause = True
            elif upper in ("LIMIT", "OFFSET", "VALUES"):
                clause = False
            elif upper == "FILTER":
                constraint = True
        if value == "(" and kind == "other":
            expression = in_expression or projection or clause or constraint or (
                previous[0] == "word" and previous[1].upper() in ("BIND", "FILTER"))
            frames.append("expr" if expression else "group")
            constraint = False
        elif value == ")" and kind == "other":
            if frames and frames[-1] != "{":
                frames.pop()
        elif value == "{" and kind == "other":
            frames.append("{")
            projection = clause = constraint = False
        elif value == "}" and kind == "other":
            while frames and frames.pop() != "{":
                pass
            clause = constraint = False
        previous = (kind, value)
        if kind != "string":
            yield previous


def _tokens(text: str) -> list[tuple[str, str]]:
    return list(_scan(text))


def dataset_iris(text: str) -> list[tuple[str, str]]:
    """The graphs the query's FROM and FROM NAMED clauses name, as ('FROM' or 'FROM NAMED', IRI or None).

    Prefixed names are expanded with the query's PREFIX declarations and the project's prefixes; a target
    that is neither an absolute IRI nor a known prefixed name gives None.

    >>> dataset_iris("PREFIX g: <http://e/> SELECT * FROM g:a FROM NAMED <http://e/b> { ?s ?p ?o }")
    [('FROM', 'http://e/a'), ('FROM NAMED', 'http://e/b')]
    """
    tokens = _tokens(text)
    prefixes = {f"{p}:": str(ns) for p, ns in PREFIXES.items()}
    found = []
    for index, (kind, value) in enumerate(tokens):
        upper = value.upper() if kind == "word" else ""
        if upper == "PREFIX" and index + 2 < len(tokens) and tokens[index + 2][0] == "iri":
            prefixes[tokens[index + 1][1]] = tokens[index + 2][1][1:-1]
        if upper != "FROM":
            continue
        rest = tokens[index + 1:index + 3]
        clause = "FROM"
        if rest and rest[0][0] == "word" and rest[0][1].upper() == "NAMED":
            clause, rest = "FROM NAMED", rest[1:]
        target = rest[0] if rest else ("other", "")
        iri = None
        if target[0] == "iri":
            iri = target[1][1:-1]
        elif target[0] == "word" and ":" in target[1]:
            prefix, _, local = target[1].partition(":")
            if f"{prefix}:" in prefixes:
                iri = prefixes[f"{prefix}:"] + local
        if iri is not None and ("\\" in iri or ":" not in iri):
            iri = None  # an escape or a relative IRI: never a graph name as written
        found.append((clause, iri))
    return found


def check_graphs(iris, known: Collection[str] | Callable[[str], bool], where: str) -> None:
    """Raise QueryRefused unless every IRI names a graph of the dataset (``known``: their IRIs or a test)."""
    is_known = known if callable(known) else (lambda iri: iri in known)
    for iri in iris:
        if iri is None or not is_known(iri):
            shown = "a graph that is not an absolute IRI" if iri is None else f"<{iri}>"
            scheme = "" if iri is None or ":" not in iri else iri.split(":", 1)[0].lower()
            why = " (nothing is ever fetched or read from a file)" if scheme not in ("", "https", "http") else ""
            raise QueryRefused(f"{where} {shown} is not a graph of this dataset{why}; the service description "
                               "(GET /sparql with Accept: text/turtle) lists the graphs")


def check_query(text: str, allowed_services: frozenset[str] = frozenset(),
                graphs: Collection[str] | Callable[[str], bool] | None = None) -> None:
    """Raise QueryRefused for an update, a SERVICE whose IRI is not on the allowlist, or (when ``graphs`` is
    given) a FROM or FROM NAMED that names no graph of the dataset.

    >>> check_query('SELECT * { ?s ?p "SERVICE <http://x>" } # SERVICE')
    >>> check_query("SELECT * { SERVICE <http://169.254.169.254/> { ?s ?p ?o } }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: SERVICE <http://169.254.169.254/> is not on this endpoint's allowlist
    >>> check_query("PREFIX ex: <http://e/> INSERT DATA { ex:a ex:b ex:c }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: this endpoint is read-only: SPARQL updates (INSERT) are refused
    >>> check_query("SELECT * { FILTER(1<'a>') SERVICE <http://127.0.0.1/> { ?s ?p ?o } FILTER('b') }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: ambiguous '<' at character 19: after an operand it compares, but <'a> also reads as an IRI; put a space after '<' or drop ' and # from the IRI
    >>> check_query("SELECT * FROM <file:///etc/passwd> { ?s ?p ?o }", graphs={"http://e/g"})
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: FROM <file:///etc/passwd> is not a graph of this dataset (nothing is ever fetched or read from a file); the service description (GET /sparql with Accept: text/turtle) lists the graphs
    """
    tokens = _tokens(text)
    position = 0
    while position < len(tokens) and tokens[position][1].upper() in _PROLOGUE:
        position += 3 if tokens[position][1].upper() == "PREFIX" else 2
    if position < len(tokens) and tokens[position][1].upper() in _UPDATE_KEYWORDS:
        raise QueryRefused(f"this endpoint is read-only: SPARQL updates ({tokens[position][1].upper()}) are refused")
    for index, (kind, value) in enumerate(tokens):
        if kind != "word" or value.upper() != "SERVICE":
            continue
        following = [v for _, v in tokens[index + 1:index + 3]]
        target = following[1] if following and following[0].upper() == "SILENT" and len(following) > 1 else \
            (following[0] if following else "")
        if not (target.startswith("<") and target[1:-1] in allowed_services):
            raise QueryRefused(f"SERVICE {target} is not on this endpoint's allowlist")
    if graphs is not None:
        for clause, iri in dataset_iris(text):
            check_graphs([iri], graphs, clause)


def declares_dataset(text: str) -> bool:
    """Whether the query names its own dataset (FROM or FROM NAMED), which then replaces the union default graph.

    Oxigraph never fetches these graphs: they name graphs of the store, and an unknown one is empty.

    >>> declares_dataset("SELECT * FROM <http://example.org/g> { ?s ?p ?o }")
    True
    >>> declares_dataset('SELECT * { ?s ?p "FROM" }')
    False
    """
    try:
        return any(kind == "word" and value.upper() == "FROM" for kind, value in _scan(text))
    except QueryRefused:
        return False
