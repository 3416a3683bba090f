"""Refuse, before evaluation, any query that could make an engine reach outside the build or crash it.

Oxigraph runs SERVICE over HTTP with no switch to turn it off and exposes no parsed query (SECURITY.md,
guarantee 2), so the check reads the text as Oxigraph's grammar can, and errs on the side of seeing more.
Oxigraph's parser is a PEG without a separate lexer: a keyword needs no space around it (``SERVICE:x``,
``1SERVICE``, ``trueSERVICE``, ``PREFIXex:<…>``), in any letter case, and when a prefixed name fails
(an undeclared prefix) it backtracks and tries the keyword reading. So the check does not tokenise
keywords at all. It splits the text only where every reading agrees, into strings, comments, IRIs,
variables and *words* (runs of name characters), and treats every case-insensitive occurrence of
``service`` or ``from`` inside a word as a possible keyword, wherever it sits, unless it is in the
local part of a name whose prefix is one of the project's (always declared, so the name cannot be
re-read). Whatever follows such an occurrence (the rest of the word, or the next token, with ``SILENT``
or ``NAMED`` peeled off or not) is the target; every IRI it could denote (each declaration of its
prefix, the project's own) must be allowed. A target that is relative, a variable or unreadable is
refused. Variables are skipped: nothing in the grammar lets SERVICE or FROM follow ``?`` or ``$``.

The one place where readings differ is ``<``: an IRI, or the less-than operator (``FILTER(1<'a>')``
opens a string inside what would be an IRI). When the IRI reading would hide a quote, both readings
are followed to the end; ``#`` in such an IRI needs no second reading, since reading it as an IRI
leaves more text to be checked. A string that never closes leaves Oxigraph no parse either, and is
reported as a malformed query.

Everything runs in time linear in the length of the query (a long string that does not close is
never scanned twice), and the same pass measures how deeply the query nests: brackets, and chains
that Oxigraph turns into nested trees (BIND, FILTER, OPTIONAL, UNION, operators, path steps).
Past ``max_depth`` the query is refused before Oxigraph's recursive parser and evaluator overflow
their stack. FROM and FROM NAMED may only name graphs of the dataset: Oxigraph never fetches them, but
a graph outside the build is a mistake or a probe, and other engines (`serve --store`) may fetch.
"""

from __future__ import annotations

import bisect
import functools
import re
import time
from dataclasses import dataclass
from typing import Callable, Collection

from .namespaces import PREFIXES

__all__ = ["QueryError", "QueryRefused", "QueryShape", "DEFAULT_MAX_DEPTH", "inspect", "check_query",
           "check_graphs", "declares_dataset"]

DEFAULT_MAX_DEPTH = 256
_MAX_READINGS = 8                       # second readings of '<' followed before the query is refused
_PROJECT_PREFIXES = {prefix: str(namespace) for prefix, namespace in PREFIXES.items()}


class QueryError(Exception):
    """The query cannot be run: it is malformed (the message is the parser's) or too deeply nested."""


class QueryRefused(Exception):
    """The query asks for something a read-only, closed endpoint does not do."""


@dataclass(frozen=True)
class QueryShape:
    """What a query may reach, as the check reads it.

    ``services``: the IRIs a SERVICE may call (None: not an absolute IRI). ``datasets``: ('FROM' or
    'FROM NAMED', IRI or None). ``update``: the first update keyword seen, if any. ``depth``: nesting estimate.
    """

    services: tuple[str | None, ...]
    datasets: tuple[tuple[str, str | None], ...]
    update: str | None
    depth: int


# ------------------------------------------------------------------------------------------------ lexing

_SPACE = re.compile(r"[ \t\r\n]*")
_COMMENT = re.compile(r"#[^\r\n]*")
_IRI = re.compile(r"""<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>""")
_VARIABLE = re.compile(r"[?$](?:\w|[^\x00-\x7f])*")
# Name characters, escapes and percent codes; a superset of what any SPARQL name or number holds.
_WORD = re.compile(r"(?:[\w\-.:]|\\.|%[0-9A-Fa-f]{2}|[^\x00-\x7f])+", re.DOTALL)
_ESCAPE = r"""\\(?:[tbnrf"'\\]|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})"""
_SHORT = {q: re.compile(rf"{q}(?:[^{q}\\\n\r]|{_ESCAPE})*{q}") for q in "'\""}
_LONG_BODY = {q: re.compile(rf"[^{q}\\]*") for q in "'\""}
_LONG_ESCAPE = re.compile(_ESCAPE)
_OPERATORS = ("||", "&&", "!=", "<=", ">=", "^^")
_CHAIN_WORDS = {"BIND", "FILTER", "OPTIONAL", "MINUS", "UNION", "GRAPH", "SERVICE", "EXISTS", "NOT", "VALUES"}
_CHAIN_MARKS = {"||", "&&", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "|", "^", "!"}
_OPEN, _CLOSE = "({[", ")}]"


class _Dead(Exception):
    """This reading of the text has no parse (a string that never closes)."""

    def __init__(self, position: int):
        self.position = position


def _long_string_end(text: str, start: int, quote: str, failing: bytearray) -> int:
    """End of the long string whose body starts at ``start``, or -1 if it does not close.

    As Oxigraph's grammar: body items are an optional one or two quotes followed by a character that is
    neither a quote nor a backslash, or by an escape; the string closes at the first run of three quotes.
    The scan is deterministic from any position it reaches, so the positions a failed scan reached are
    marked in ``failing``; a later scan that reaches one of them fails at once, and no text is scanned twice.
    """
    body, n = _LONG_BODY[quote], len(text)
    position, reached = start, []
    while True:
        position = body.match(text, position).end()  # type: ignore[union-attr]  # matches the empty string
        if position >= n or failing[position]:
            break
        reached.append(position)
        if text[position] == "\\":
            escape = _LONG_ESCAPE.match(text, position)
            if escape is None:
                break
            position = escape.end()
        elif text.startswith(quote * 3, position):
            return position + 3
        else:
            position += 2 if text.startswith(quote * 2, position) else 1
            if position < n and text[position] == "\\" and _LONG_ESCAPE.match(text, position) is None:
                break
    for position in reached:
        failing[position] = 1
    return -1


class _Reading:
    """One reading of the text: its tokens as (kind, value, position), kinds 'iri', 'word', 'var', 'string',
    'mark'; comments and white space left out. ``notable``: indices of the words that hold a keyword."""

    def __init__(self, tokens: list, notable: list, position: int, operator_here: bool = False):
        self.tokens, self.notable, self.position = tokens, notable, position
        self.operator_here = operator_here   # read the '<' at ``position`` as the less-than operator
        self.depth = 0


_KEYWORDS = re.compile(r"service|from|prefix", re.IGNORECASE)
_UPDATES = ("INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH", "DEFINE")
_NOTABLE = re.compile("|".join(["service", "from", "prefix", *(word.lower() for word in _UPDATES)]))
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # keeps positions
_CHAIN_WORD = re.compile("|".join(_CHAIN_WORDS), re.IGNORECASE)


class _Lexer:
    def __init__(self, text: str, max_depth: int, deadline: float | None):
        self.text, self.max_depth, self.deadline = text, max_depth, deadline
        self.failing = {"'": bytearray(len(text) + 1), '"': bytearray(len(text) + 1)}  # see _long_string_end
        self.pending: list[_Reading] = []
        self.readings = 0
        # Where a keyword could start (found once, in C); words are looked at only where one does.
        self.hits = [match.start() for match in _NOTABLE.finditer(text.translate(_ASCII_LOWER))]

    def run(self) -> list[_Reading]:
        self.pending.append(_Reading([], [], 0))
        done: list[_Reading] = []
        dead: _Dead | None = None
        while self.pending:
            reading = self.pending.pop()
            try:
                self._lex(reading)
                done.append(reading)
            except _Dead as error:
                dead = error if dead is None else dead
        if not done:
            assert dead is not None  # every reading died
            raise QueryError(f"a string opened at {_where(self.text, dead.position)} never closes")
        return done

    def _fork(self, reading: _Reading, position: int) -> None:
        self.readings += 1
        if self.readings > _MAX_READINGS:
            raise QueryRefused(f"too many ambiguous '<' (the last at {_where(self.text, position)}): each could "
                               "start an IRI holding a quote or be the less-than operator; write %27 for ' in "
                               "IRIs, or put a space after '<' when comparing")
        self.pending.append(_Reading(list(reading.tokens), list(reading.notable), position, operator_here=True))

    def _lex(self, reading: _Reading) -> None:
        text, tokens, notable, n = self.text, reading.tokens, reading.notable, len(self.text)
        hits, hit = self.hits, bisect.bisect_left(self.hits, reading.position)
        frames: list[list[int]] = []   # per open bracket: [chain marks, deepest child]
        top = [0, 0]
        open_depth = 0                 # brackets open plus the chain marks in them so far: a lower bound
        position, count = reading.position, 0
        operator_here = reading.operator_here
        while position < n:
            char = text[position]
            if char in " \t\r\n":
                position = _SPACE.match(text, position).end()  # type: ignore[union-attr]  # matches ''
                continue
            if char == "#":
                position = _COMMENT.match(text, position).end()  # type: ignore[union-attr]  # text[position] is #
                continue
            count += 1
            if count & 4095 == 0 and self.deadline is not None and time.monotonic() > self.deadline:
                raise TimeoutError("the query check ran past the time limit")
            marks = 0
            if char == "'" or char == '"':
                close = _long_string_end(text, position + 3, char, self.failing[char]) \
                    if text.startswith(char * 3, position) else -1
                if close >= 0:
                    end = close
                elif text.startswith(char * 2, position):
                    end = position + 2
                else:
                    short = _SHORT[char].match(text, position)
                    if short is None:
                        raise _Dead(position)
                    end = short.end()
                tokens.append(("string", "", position))
            elif char == "?" or char == "$":
                end = _VARIABLE.match(text, position).end()  # type: ignore[union-attr]  # text[position] is ? or $
                tokens.append(("var", text[position:end], position))
            elif char == "<" and not operator_here and (iri := _IRI.match(text, position)):
                if "'" in iri.group():
                    self._fork(reading, position)
                end = iri.end()
                tokens.append(("iri", iri.group(), position))
            elif word := _WORD.match(text, position):
                end, value = word.end(), word.group()
                while hit < len(hits) and hits[hit] < position:
                    hit += 1
                if hit < len(hits) and hits[hit] < end:
                    notable.append(len(tokens))
                tokens.append(("word", value, position))
                marks = value.count("-") + (len(value) <= 8 and _CHAIN_WORD.fullmatch(value) is not None)
            else:
                end = position + (2 if text.startswith(_OPERATORS, position) else 1)
                value = text[position:end]
                tokens.append(("mark", value, position))
                if value in _OPEN:
                    frames.append([0, 0])
                    open_depth += 1
                    if open_depth > self.max_depth:
                        self._too_deep(open_depth, position)
                elif value in _CLOSE:
                    if frames:
                        inner, child = frames.pop()
                        open_depth -= inner + 1
                        parent = frames[-1] if frames else top
                        parent[1] = max(parent[1], inner + child + 1)
                else:
                    marks = value in _CHAIN_MARKS
            operator_here = False
            position = end
            if marks:  # chains that become nested trees
                (frames[-1] if frames else top)[0] += marks
                open_depth += marks
                if open_depth > self.max_depth:
                    self._too_deep(open_depth, position)
        while frames:
            inner, child = frames.pop()
            parent = frames[-1] if frames else top
            parent[1] = max(parent[1], inner + child + 1)
        reading.depth = top[0] + top[1]
        if reading.depth > self.max_depth:
            self._too_deep(reading.depth, n)

    def _too_deep(self, depth: int, position: int) -> None:
        raise QueryError(f"the query nests more than {self.max_depth} levels deep (brackets, and chained BIND, "
                         f"FILTER, OPTIONAL, UNION, operators or path steps) by {_where(self.text, position)}; "
                         "split it or flatten it (VALUES or IN lists do not nest)")


def _where(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"line {line}, column {position - (text.rfind(chr(10), 0, position) + 1) + 1}"


# --------------------------------------------------------------------------------------------- reading

_UCHAR = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_LOCAL_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
def _iri_value(token: str) -> str | None:
    """An IRIREF's IRI, escapes decoded; None if it is relative (it would depend on BASE)."""
    try:
        value = _UCHAR.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), token[1:-1])
    except (ValueError, OverflowError):
        return None
    return value if _SCHEME.match(value) else None


def _in_project_name(word: str, offset: int) -> bool:
    """Whether ``offset`` lies in the local part of a name whose prefix is the project's (always declared, so
    the name is read whole). A local part cannot start with '.' or '-': ``cmc:.SERVICE`` is ``cmc:``, the end
    of a triple, and a keyword."""
    colon = word.find(":")
    return 0 <= colon < offset and word[:colon] in _PROJECT_PREFIXES and word[colon + 1:colon + 2] not in ".-"


class _Names:
    """Every IRI a prefix may stand for: the project's namespace and the query's own declarations.

    Declarations belong to the prologue, where the last one of a prefix wins. When the text holds
    ``prefix`` anywhere past the prologue as read here (so the prologue may have been read short), every
    declaration-like sequence anywhere counts instead, in every reading.
    """

    def __init__(self, readings: list[_Reading]):
        self.declared: dict[str, set[str | None]] = {}
        for reading in readings:
            declared, end = _prologue(reading.tokens)
            if any(_keywords(reading.tokens[index][1], "prefix") for index in reading.notable if index >= end):
                declared = _anywhere(reading)
            for prefix, values in declared.items():
                self.declared.setdefault(prefix, set()).update(values)

    def expand(self, name: str) -> set[str | None]:
        """The IRIs a prefixed name may denote (None where it cannot be read as an absolute IRI; none at all when its
        prefix is declared nowhere, since Oxigraph cannot read it then)."""
        prefix, _, local = name.rstrip(".").partition(":")
        namespaces = set(self.declared.get(prefix, ()))
        if prefix in _PROJECT_PREFIXES:
            namespaces.add(_PROJECT_PREFIXES[prefix])
        # An undeclared prefix: Oxigraph's reading through it fails, so it names nothing.
        local = _LOCAL_ESCAPE.sub(r"\1", local)
        return {None if namespace is None else namespace + local for namespace in namespaces}


def _keywords(word: str, only: str | None = None) -> list[re.Match]:
    """Where a keyword may start in a word: any case-insensitive occurrence, but in a project name's local part."""
    return [match for match in _KEYWORDS.finditer(word) if (only is None or match.group().lower() == only)
            and not _in_project_name(word, match.start())]


def _declaration(tokens: list, index: int) -> tuple[str, str | None, int] | None:
    """The PREFIX declaration whose keyword ends the word at ``index`` (``PREFIX p: <…>``, ``PREFIXp:<…>``):
    (prefix, IRI, index after it), or None."""
    rest = tokens[index][1][len("prefix"):] if tokens[index][1].lower().startswith("prefix") else None
    following = tokens[index + 1:index + 3]
    if rest and rest.endswith(":") and following and following[0][0] == "iri":
        return rest[:-1], _iri_value(following[0][1]), index + 2
    if rest == "" and len(following) == 2 and following[0][0] == "word" and following[0][1].endswith(":") \
            and following[1][0] == "iri":
        return following[0][1][:-1], _iri_value(following[1][1]), index + 3
    return None


def _prologue(tokens: list) -> tuple[dict[str, set[str | None]], int]:
    """The declarations of the prologue, the last of each prefix winning, and the index where it ends."""
    declared: dict[str, set[str | None]] = {}
    index = 0
    while index < len(tokens) and tokens[index][0] == "word":
        declaration = _declaration(tokens, index)
        if declaration is not None:
            prefix, iri, index = declaration
            declared[prefix] = {iri}
        elif tokens[index][1].lower() == "base" and index + 1 < len(tokens) and tokens[index + 1][0] == "iri":
            index += 2
        else:
            break
    return declared, index


def _anywhere(reading: _Reading) -> dict[str, set[str | None]]:
    """Every declaration-like sequence: ``prefix`` anywhere in a word, then a name ending in ':' and an IRI."""
    declared: dict[str, set[str | None]] = {}
    for index in reading.notable:
        value = reading.tokens[index][1]
        for match in _keywords(value, "prefix"):
            shifted = list(reading.tokens[index:index + 3])
            shifted[0] = ("word", value[match.start():], 0)
            declaration = _declaration(shifted, 0)
            if declaration is not None:
                declared.setdefault(declaration[0], set()).add(declaration[1])
    return declared


def _targets(tokens: list, index: int, rest: str, optional_word: str, names: _Names) -> set[str | None] | None:
    """The IRIs the keyword ending a word (``rest``: what follows it in the word) may name, with or without
    ``optional_word`` (SILENT, NAMED) peeled off; None when no reading names anything (not a keyword there)."""
    following = tokens[index + 1:index + 3]
    candidates: list[tuple[str, str]] = []
    if rest:
        candidates.append(("word", rest))
        if rest.lower().startswith(optional_word):
            peeled = rest[len(optional_word):]
            candidates.append(("word", peeled) if peeled else (following[0][:2] if following else ("end", "")))
    elif following:
        candidates.append(following[0][:2])
        kind, value = following[0][:2]
        if kind == "word" and value.lower().startswith(optional_word):
            peeled = value[len(optional_word):]
            candidates.append(("word", peeled) if peeled else (following[1][:2] if len(following) > 1 else ("end", "")))
    found: set[str | None] = set()
    for kind, value in candidates:
        if kind == "iri":
            found.add(_iri_value(value))
        elif kind == "var":
            found.add(None)
        elif kind == "word" and ":" in value:
            found |= names.expand(value)
    return found or None


def inspect(text: str, max_depth: int = DEFAULT_MAX_DEPTH, deadline: float | None = None) -> QueryShape:
    """Read what the query may reach; raise QueryError (never closing string, too deep) or QueryRefused."""
    readings = _Lexer(text, max_depth, deadline).run()
    names = _Names(readings)
    services: list[str | None] = []
    datasets: list[tuple[str, str | None]] = []
    update = None
    for reading in readings:
        tokens = reading.tokens
        for index in reading.notable:
            value = tokens[index][1]
            upper = value.upper()
            if update is None and upper.startswith(_UPDATES) and value.partition(":")[0] not in _PROJECT_PREFIXES:
                update = next(word for word in _UPDATES if upper.startswith(word))
            for match in _keywords(value):
                keyword = match.group().lower()
                if keyword == "prefix":
                    continue
                optional = "silent" if keyword == "service" else "named"
                targets = _targets(tokens, index, value[match.end():], optional, names)
                if targets is None:
                    continue
                if keyword == "service":
                    services += sorted(targets, key=str)
                else:
                    datasets += [("FROM", iri) for iri in sorted(targets, key=str)]
    return QueryShape(tuple(dict.fromkeys(services)), tuple(dict.fromkeys(datasets)), update,
                      max(reading.depth for reading in readings))


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


# A worker checks the same few queries over and over (pages, clients' templates): the readings of the last few
# hundred short ones are kept (reading one took a third of a trivial query's time in the worker).
_KEPT_QUERY_CHARS = 4096
_inspected = functools.lru_cache(maxsize=256)(inspect)


def check_query(text: str, allowed_services: Collection[str] = frozenset(),
                graphs: Collection[str] | Callable[[str], bool] | None = None,
                max_depth: int = DEFAULT_MAX_DEPTH, deadline: float | None = None) -> QueryShape:
    """Raise QueryRefused for an update, a SERVICE whose IRI is not on the allowlist, or (when ``graphs`` is
    given) a FROM or FROM NAMED that names no graph of the dataset; QueryError for a query nested deeper
    than ``max_depth`` or with a string that never closes. Returns what the query may reach.

    >>> check_query('SELECT * { ?s ?p "SERVICE <http://x>" } # SERVICE').services
    ()
    >>> check_query("PREFIX : <http://127.0.0.1/admin/> SELECT * WHERE { SERVICE:secret { ?s ?p ?o } }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: SERVICE <http://127.0.0.1/admin/secret> is not on this endpoint's allowlist
    >>> check_query("PREFIX ex: <http://e/> INSERT DATA { ex:a ex:b ex:c }")
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: this endpoint is read-only: SPARQL updates (INSERT) are refused
    >>> check_query("PREFIX : <file:///etc/> SELECT * FROM:passwd WHERE { ?s ?p ?o }", graphs={"http://e/g"})
    Traceback (most recent call last):
    ...
    cmc_kg.safety.QueryRefused: FROM <file:///etc/passwd> is not a graph of this dataset (nothing is ever fetched or read from a file); the service description (GET /sparql with Accept: text/turtle) lists the graphs
    """
    shape = (_inspected(text, max_depth) if deadline is None and len(text) <= _KEPT_QUERY_CHARS
             else inspect(text, max_depth, deadline))
    if shape.update:
        raise QueryRefused(f"this endpoint is read-only: SPARQL updates ({shape.update}) are refused"
                           if shape.update != "DEFINE" else "engine-specific pragmas (DEFINE) are refused")
    for iri in shape.services:
        if iri is None or iri not in allowed_services:
            shown = f"<{iri}>" if iri else "with a variable, a relative IRI or an undeclared prefix"
            raise QueryRefused(f"SERVICE {shown} is not on this endpoint's allowlist")
    if graphs is not None:
        for clause, iri in shape.datasets:
            check_graphs([iri], graphs, clause)
    return shape


def declares_dataset(text: str) -> bool:
    """Whether the query names its own dataset (FROM or FROM NAMED), which then replaces the union default graph.

    >>> declares_dataset("SELECT * FROM <http://example.org/g> { ?s ?p ?o }")
    True
    >>> declares_dataset('SELECT * { ?s ?p "FROM" }')
    False
    """
    try:
        return bool(inspect(text).datasets)
    except (QueryError, QueryRefused):
        return False
