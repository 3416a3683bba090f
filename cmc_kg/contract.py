"""What the server asks of a query engine, and what an engine answers: the one contract that the process pool
(cmc_kg/engine.py) and the remote engine (cmc_kg/remote.py) both implement, so that server/ never asks which
one it holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Protocol

from .formats import NotAcceptable
from .safety import DEFAULT_MAX_DEPTH, QueryError, QueryRefused

__all__ = ["QueryEngine", "QueryRequest", "Answer", "QueryPolicy", "QueryError", "QueryRefused", "NotAcceptable",
           "QueryTimeout", "EngineBusy", "EngineClosed", "WorkerDied", "WorkerCrashed", "OutOfMemory",
           "AnswerTooLarge", "ServiceError"]


class QueryTimeout(Exception):
    """The query ran past the time limit and was stopped."""


class EngineBusy(Exception):
    """No worker became free within the time limit."""


class WorkerDied(EngineBusy):
    """The worker stopped while answering (killed from outside, or out of memory); it has been replaced."""


class WorkerCrashed(Exception):
    """The query crashed its worker (a signal such as SIGSEGV); it would crash any other, so it is not retried."""


class AnswerTooLarge(Exception):
    """The answer, serialised, is larger than the byte cap (``QueryRequest.max_bytes``)."""


class OutOfMemory(Exception):
    """The query needed more memory than a worker may use; it would again, so it is not retried."""


class EngineClosed(Exception):
    """The engine was retired: a newer build is served by another engine."""


class ServiceError(Exception):
    """A SERVICE endpoint the query called failed: no connection, an HTTP error, or an answer that is not SPARQL
    results. (One that does not answer at all is stopped by the query's time limit, as any slow query is.)"""


@dataclass(frozen=True)
class QueryRequest:
    """A query with its dataset and the formats the client accepts for each kind of answer.

    ``default_graphs`` / ``named_graphs`` are the protocol's default-graph-uri and named-graph-uri, which
    override the query's FROM and FROM NAMED; with neither, the default graph is the union of all graphs
    (``asserted_only``: all but the inferred graph) and every graph is named.
    """

    text: str
    results_format: str | None = "json"
    graph_format: str | None = "turtle"
    default_graphs: tuple[str, ...] | None = None
    named_graphs: tuple[str, ...] | None = None
    asserted_only: bool = False
    max_rows: int = 10_000
    max_bytes: int = 16 << 20


@dataclass(frozen=True)
class Answer:
    """A serialised answer: ``kind`` is 'results', 'boolean' or 'graph'; ``truncated`` says the row cap cut it."""

    kind: str
    format: str
    body: bytes
    rows: int
    truncated: bool
    seconds: float


@dataclass(frozen=True)
class QueryPolicy:
    """What the check lets through: SERVICE endpoints, and how deeply a query may nest."""

    allowed_services: frozenset[str] = frozenset()
    max_depth: int = DEFAULT_MAX_DEPTH


class QueryEngine(Protocol):
    """Answers queries over one version of the graph.

    ``build_id`` names that version in ETags and the answer cache, so it must change whenever the data may
    have: every ``reload_interval`` the server compares ``latest()`` with the version it saw last and, when it
    changed, opens a new engine, serves from it at once and retires this one.
    """

    build_id: str
    triples: int             # in the merged default graph
    graphs: frozenset[str]   # IRIs of the named graphs, which FROM and GRAPH may name
    network_filter: str | None  # whether its workers deny themselves the network (engine.py); None: not ours to say

    @property
    def loaded(self) -> Hashable:
        """The version of its source the engine answers from."""

    def run(self, request: QueryRequest) -> Answer:
        """Answer, or raise QueryError, QueryRefused, NotAcceptable, AnswerTooLarge, ServiceError, QueryTimeout,
        EngineBusy, WorkerCrashed, OutOfMemory or EngineClosed (retired: ask the engine that took over)."""

    def latest(self) -> Hashable | None:
        """The version its source holds now, cheaply (asked every ``reload_interval``); None: cannot tell now."""

    def live_workers(self) -> int | None:
        """Queries it can run at once now (fewer while a worker is replaced); None: it cannot tell."""

    def close(self, wait: float = 0.0) -> None:
        """Stop answering; queries in flight get up to ``wait`` seconds."""

    def retire(self) -> None:
        """Close in the background once the queries in flight are answered."""
