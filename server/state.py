"""What the blueprints share: settings, the query engine, the build's identity, and the answer cache."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, has_request_context, request as http_request

from cmc_kg.engine import Answer, Engine, EngineBusy, EngineClosed, QueryPolicy, QueryRequest
from cmc_kg.remote import RemoteEngine
from cmc_kg.settings import Settings, Paths

from .admission import Admission

__all__ = ["State"]


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


@dataclass(frozen=True)
class _Serving:
    """What answers queries now: an engine and the build it holds, swapped as one when a new build arrives."""

    engine: Any  # Engine, RemoteEngine or another object with run(QueryRequest) and retire()
    build_id: str
    triples: int
    graphs: frozenset[str] | None  # IRIs of the dataset's named graphs; None: unknown (FROM then refused)


@dataclass
class State:
    """The application's state; one per app, in ``app.extensions["cmc_kg"]``.

    With the embedded engine and ``reload_interval`` > 0, a background thread looks at the build's dump
    (one stat per interval) and, when a new build has replaced it, starts an engine on it, swaps it in at
    once and retires the old engine after its queries in flight are answered: no restart, no request lost.
    A failed build writes nothing, so the last good one goes on being served.
    """

    config: Settings
    paths: Paths
    serving: _Serving
    cache: _Cache = field(repr=False)
    reloads: int = 0
    reload_error: str = ""
    _quads: tuple[str, int] = ("", 0)
    admission: Admission = field(default_factory=Admission.disabled, repr=False)

    @classmethod
    def start(cls, config: Settings, engine=None) -> "State":
        paths = config.paths()
        embedded = engine is None and not config.store
        if engine is None and config.store:
            engine = RemoteEngine(config.store, timeout=config.query_timeout, policy=_policy(config),
                                  max_answer_bytes=config.max_answer_bytes)
        elif engine is None:
            engine = cls._engine(config, paths)
        state = cls(config, paths, _serving(engine, config, paths), _Cache(config.cache_entries, config.cache_bytes))
        state.admission = Admission.for_server(config, lambda: state.engine)
        if embedded and config.reload_interval > 0:
            threading.Thread(target=state._watch_build, name="cmc-kg-reload", daemon=True).start()
        return state

    @staticmethod
    def _engine(config: Settings, paths: Paths) -> Engine:
        return Engine(paths.dump_file, workers=config.workers, timeout=config.query_timeout,
                      memory_mb=config.worker_memory, network=bool(config.service_allowlist),
                      policy=_policy(config), max_answer_bytes=config.max_answer_bytes,
                      lane_seconds=config.quick_lane)

    @property
    def engine(self):
        return self.serving.engine

    @property
    def build_id(self) -> str:
        return self.serving.build_id

    @property
    def triples(self) -> int:
        return self.serving.triples

    @property
    def graphs(self) -> frozenset[str] | None:
        return self.serving.graphs

    @staticmethod
    def current() -> "State":
        return current_app.extensions["cmc_kg"]

    def run(self, request: QueryRequest) -> tuple[Answer, bool]:
        """Answer a request, from the cache when the same build answered it before; says whether it was cached."""
        for _ in range(3):  # an engine retired between reading it and using it: ask the one that took over
            serving = self.serving
            key = (serving.build_id, request)
            cached = self.cache.get(key)
            if cached is not None:
                return cached, True
            try:
                with self.admission.admit(_client()) as ticket:  # raises TooManyQueries (server/admission.py)
                    answer = serving.engine.run(request)
                    ticket.charge(answer.seconds)
            except EngineClosed:
                continue
            if not answer.truncated:
                self.cache.put(key, answer)
            return answer, False
        raise EngineBusy("the server is switching to a new build; try again")

    def quads(self) -> int:
        """Triples over all named graphs (a fact from two sources counts twice), counted once per build."""
        build = self.build_id
        if self._quads[0] != build:
            rows = self.select("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }")
            self._quads = (build, int(rows[0]["n"]["value"]))
        return self._quads[1]

    def etag(self, request: QueryRequest) -> str:
        return hashlib.sha1(repr((self.build_id, request)).encode("utf-8")).hexdigest()

    def select(self, text: str) -> list[dict[str, dict]]:
        """Rows of a SELECT as SPARQL JSON bindings, for pages that render query results themselves."""
        answer, _ = self.run(QueryRequest(text, max_rows=self.config.max_rows,
                                          max_bytes=self.config.max_answer_bytes))
        return json.loads(answer.body)["results"]["bindings"]

    def _watch_build(self) -> None:
        """Poll the dump's identity (inode, size, mtime) and reload when it changes; runs as long as the server."""
        seen = _signature(self.paths.dump_file)
        while True:
            time.sleep(self.config.reload_interval)
            now = _signature(self.paths.dump_file)
            if now is None or now == seen:
                continue
            seen = now
            self.reload()

    def reload(self) -> bool:
        """Serve the build now in the dump if it is new; keep the current one on any failure. Says if it swapped."""
        with _RELOAD_LOCK:
            try:
                engine = self._engine(self.config, self.paths)
            except Exception as failure:  # a dump that cannot be loaded: keep serving the last good one
                self.reload_error = f"{type(failure).__name__}: {failure}"
                print(f"cmc-kg: the new build was not loaded, still serving {self.build_id[:12]}: "
                      f"{self.reload_error}", file=sys.stderr)
                return False
            if engine.build_id == self.build_id:
                engine.close()
                return False
            old, self.serving = self.serving, _serving(engine, self.config, self.paths)
            self.reloads += 1
            self.reload_error = ""
            print(f"cmc-kg: now serving build {engine.build_id[:12]} ({engine.triples} triples)", file=sys.stderr)
            old.engine.retire()
            return True


_RELOAD_LOCK = threading.Lock()


def _policy(config: Settings) -> QueryPolicy:
    return QueryPolicy(frozenset(config.service_allowlist), config.max_nesting)


def _client() -> str | None:
    """The address of the client whose request is being answered (None outside a request)."""
    return http_request.remote_addr if has_request_context() else None


def _signature(path) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _serving(engine, config: Settings, paths: Paths) -> _Serving:
    if isinstance(engine, Engine):
        return _Serving(engine, engine.build_id, engine.triples, engine.graphs)
    # A remote store changes with each push; its size at start-up stands in for a build id.
    build_id = f"{config.store}#{engine.triples}" if config.store else _build_id(paths)
    graphs = getattr(engine, "graphs", None)
    if graphs is None:
        try:
            answer = engine.run(QueryRequest("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", max_rows=100_000))
            graphs = frozenset(b["g"]["value"] for b in json.loads(answer.body)["results"]["bindings"])
        except Exception:
            graphs = None
    return _Serving(engine, build_id, getattr(engine, "triples", 0), graphs)


def _build_id(paths: Paths) -> str:
    """The dump's checksum from the build report (or computed), naming the build in ETags and the cache."""
    try:
        return json.loads(paths.report_file.read_text(encoding="utf-8"))["dump_sha256"]
    except (OSError, ValueError, KeyError):
        return hashlib.sha256(paths.dump_file.read_bytes()).hexdigest() if paths.dump_file.exists() else "none"
