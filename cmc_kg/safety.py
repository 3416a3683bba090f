"""Refuse, before evaluation, any query that could make the engine reach outside the build.

Oxigraph runs SERVICE over HTTP with no switch to turn it off (see FIELD-NOTES), and updates
would change a read-only graph. A token scan is enough to find both: keywords cannot hide
inside strings, IRIs or comments once those are tokenised away, and it needs no parser lock.
"""

from __future__ import annotations

import re

__all__ = ["QueryRefused", "check_query", "declares_dataset"]

_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
      | (?P<word>[?$]?[A-Za-z_][\w\-.]*(?::[\w\-.%]*)?|:[\w\-.%]*)
      | (?P<other>\S)""",
    re.VERBOSE | re.DOTALL,
)
_UPDATE_KEYWORDS = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}
_PROLOGUE = {"PREFIX", "BASE"}


class QueryRefused(Exception):
    """The query asks for something a read-only, closed endpoint does not do."""


def _tokens(text: str):
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind not in ("comment", "string"):
            yield kind, match.group(kind)


def check_query(text: str, allowed_services: frozenset[str] = frozenset()) -> None:
    """Raise QueryRefused for an update or a SERVICE whose IRI is not on the allowlist.

    >>> check_query('SELECT * { ?s ?p "SERVICE <http://x>" } # SERVICE')
    >>> check_query("SELECT * { SERVICE <http://169.254.169.254/> { ?s ?p ?o } }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: SERVICE <http://169.254.169.254/> is not on this endpoint's allowlist
    >>> check_query("PREFIX ex: <http://e/> INSERT DATA { ex:a ex:b ex:c }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: this endpoint is read-only: SPARQL updates (INSERT) are refused
    """
    tokens = list(_tokens(text))
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


def declares_dataset(text: str) -> bool:
    """Whether the query names its own dataset (FROM or FROM NAMED), which then replaces the union default graph.

    Oxigraph never fetches these graphs: they name graphs of the store, and an unknown one is empty.

    >>> declares_dataset("SELECT * FROM <http://example.org/g> { ?s ?p ?o }")
    True
    >>> declares_dataset('SELECT * { ?s ?p "FROM" }')
    False
    """
    return any(kind == "word" and value.upper() == "FROM" for kind, value in _tokens(text))
