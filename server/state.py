"""What the blueprints share: settings, the query engine, the build's identity, and the answer cache."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from flask import current_app, has_request_context, request as http_request

from cmc_kg.contract import Answer, EngineBusy, EngineClosed, QueryEngine, QueryPolicy, QueryRequest
from cmc_kg.engine import Engine
from cmc_kg.query import internal_query
from cmc_kg.remote import RemoteEngine
from cmc_kg.settings import Settings, Paths

from .admission import Admission

__all__ = ["State"]

T = TypeVar("T")


class _Cache:
    """An LRU of answers, bounded in entries and in bytes. The graph only changes with a new build, whose id is
    part of every key."""

    def __init__(self, size: int, max_bytes: int):
        self.size, self.max_bytes, self.bytes = size, max_bytes, 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value: Answer) -> None:
        cost = len(value.body) + len(key[1].text)
        if self.size <= 0 or cost > self.max_bytes // 4:   # one answer never takes most of the cache
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.bytes += cost
            while len(self._items) > self.size or self.bytes > self.max_bytes:
                old_key, old = self._items.popitem(last=False)
                self.bytes -= len(old.body) + len(old_key[1].text)


@dataclass
class State:
    """The application's state; one per app, in ``app.extensions["cmc_kg"]``.

    With ``reload_interval`` > 0, a background thread asks the engine every interval which version its source
    holds (the embedded engine: one stat of the dump; the remote one: the build id the last push wrote) and,
    when it changed, opens an engine on the new version, swaps it in at once and retires the old engine after
    its queries in flight are answered: no restart, no request lost, and the build id that keys the answer cache
    and the ETags changes with the data. A failed build writes nothing, so the last good one goes on being served.
    """

    config: Settings
    paths: Paths
    engine: QueryEngine
    cache: _Cache = field(repr=False)
    reloads: int = 0
    reload_error: str = ""
    _per_build: dict[str, tuple[str, object]] = field(default_factory=dict, repr=False)
    admission: Admission = field(default_factory=Admission.disabled, repr=False)

    @classmethod
    def start(cls, config: Settings, engine: QueryEngine | None = None) -> "State":
        state = cls(config, config.paths(), engine or _open_engine(config),
                    _Cache(config.cache_entries, config.cache_bytes))
        state.admission = Admission.for_server(config, lambda: state.engine)
        if config.reload_interval > 0:
            threading.Thread(target=state._watch_source, name="cmc-kg-reload", daemon=True).start()
        return state

    @property
    def build_id(self) -> str:
        return self.engine.build_id

    @property
    def triples(self) -> int:
        return self.engine.triples

    @property
    def graphs(self) -> frozenset[str]:
        return self.engine.graphs

    @staticmethod
    def current() -> "State":
        return current_app.extensions["cmc_kg"]

    def run(self, request: QueryRequest, client: str | None = None) -> tuple[Answer, bool]:
        """Answer a request, from the cache when the same build answered it before; says whether it was cached.
        ``client``: the address asking (default: that of the request being answered, if any)."""
        for _ in range(3):  # an engine retired between reading it and using it: ask the one that took over
            engine = self.engine
            key = (engine.build_id, request)
            cached = self.cache.get(key)
            if cached is not None:
                return cached, True
            try:
                with self.admission.admit(client or _client()) as ticket:  # raises TooManyQueries (server/admission.py)
                    answer = engine.run(request)
                    ticket.charge(answer.seconds)
            except EngineClosed:
                continue
            if not answer.truncated:
                self.cache.put(key, answer)
            return answer, False
        raise EngineBusy("the server is switching to a new build; try again")

    def per_build(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, run once per build: facts every page shows (graph sizes, sources) that only a new build
        changes. Two threads may both compute it at a switch; either answer is the build's."""
        build = self.build_id
        held = self._per_build.get(name)
        if held is None or held[0] != build:
            held = (build, compute())
            self._per_build[name] = held
        return held[1]  # type: ignore[return-value]

    def quads(self) -> int:
        """Triples over all named graphs (a fact from two sources counts twice)."""
        return self.per_build("quads", lambda: int(self.select(internal_query("quads"))[0]["n"]["value"]))

    def etag(self, request: QueryRequest) -> str:
        return hashlib.sha1(repr((self.build_id, request)).encode("utf-8")).hexdigest()

    def select(self, text: str) -> list[dict[str, dict]]:
        """Rows of a SELECT as SPARQL JSON bindings, for pages that render query results themselves."""
        answer, _ = self.run(QueryRequest(text, max_rows=self.config.max_rows,
                                          max_bytes=self.config.max_answer_bytes))
        return json.loads(answer.body)["results"]["bindings"]

    def _watch_source(self) -> None:
        """Ask the engine which version its source holds and reload when it changes; runs as long as the server."""
        seen = self.engine.loaded
        while True:
            time.sleep(self.config.reload_interval)
            try:
                now = self.engine.latest()
            except Exception as failure:  # the remote engine is unreachable for a moment: ask again next time
                print(f"cmc-kg: cannot tell whether there is a new build: {failure}", file=sys.stderr)
                continue
            if now is None or now == seen:
                continue
            seen = now
            self.reload()

    def reload(self) -> bool:
        """Serve the version its source holds now if it is new; keep the current one on any failure. Says if it swapped."""
        with _RELOAD_LOCK:
            try:
                engine = _open_engine(self.config)
            except Exception as failure:  # a dump that cannot be loaded, an engine that fails: keep the last good one
                self.reload_error = f"{type(failure).__name__}: {failure}"
                print(f"cmc-kg: the new build was not loaded, still serving {self.build_id[:12]}: "
                      f"{self.reload_error}", file=sys.stderr)
                return False
            if engine.build_id == self.build_id:
                engine.close()
                return False
            old, self.engine = self.engine, engine
            self.reloads += 1
            self.reload_error = ""
            print(f"cmc-kg: now serving build {engine.build_id[:12]} ({engine.triples} triples)", file=sys.stderr)
            old.retire()
            return True


_RELOAD_LOCK = threading.Lock()


def _policy(config: Settings) -> QueryPolicy:
    return QueryPolicy(frozenset(config.service_allowlist), config.max_nesting)


def _client() -> str | None:
    """The address of the client whose request is being answered (None outside a request)."""
    return http_request.remote_addr if has_request_context() else None


def _open_engine(config: Settings) -> QueryEngine:
    """The engine the settings ask for: worker processes over the build's dump, or the remote store."""
    if config.store:
        return RemoteEngine(config.store, timeout=config.query_timeout, policy=_policy(config),
                            max_answer_bytes=config.max_answer_bytes)
    return Engine(config.paths().dump_file, workers=config.workers, timeout=config.query_timeout,
                  memory_mb=config.worker_memory, network=bool(config.service_allowlist),
                  policy=_policy(config), max_answer_bytes=config.max_answer_bytes,
                  lane_seconds=config.quick_lane)
