"""What the blueprints share: settings, the query engine, the build's identity, and the answer cache."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from flask import current_app

from cmc_kg.engine import Answer, Engine, QueryRequest
from cmc_kg.remote import RemoteEngine
from cmc_kg.settings import ServerConfig, Settings

__all__ = ["State"]


class _Cache:
    """A small LRU of answers. The graph only changes with a new build, whose id is part of every key."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class State:
    """The application's state; one per app, in ``app.extensions["cmc_kg"]``."""

    config: ServerConfig
    paths: Settings
    engine: object
    build_id: str
    triples: int
    cache: _Cache = field(repr=False)

    @classmethod
    def start(cls, config: ServerConfig, engine=None) -> "State":
        paths = config.paths()
        if engine is None and config.store:
            engine = RemoteEngine(config.store, timeout=config.query_timeout)
        elif engine is None:
            engine = Engine(paths.dump_file, workers=config.workers, timeout=config.query_timeout)
        # A remote store changes with each push; its size at start-up stands in for a build id.
        build_id = f"{config.store}#{engine.triples}" if config.store else _build_id(paths)
        return cls(config, paths, engine, build_id, getattr(engine, "triples", 0), _Cache(config.cache_entries))

    @staticmethod
    def current() -> "State":
        return current_app.extensions["cmc_kg"]

    def run(self, request: QueryRequest) -> tuple[Answer, bool]:
        """Answer a request, from the cache when the same build answered it before; says whether it was cached."""
        key = (self.build_id, request)
        cached = self.cache.get(key)
        if cached is not None:
            return cached, True
        answer = self.engine.run(request)
        if not answer.truncated:
            self.cache.put(key, answer)
        return answer, False

    def etag(self, request: QueryRequest) -> str:
        return hashlib.sha1(repr((self.build_id, request)).encode("utf-8")).hexdigest()

    def select(self, text: str) -> list[dict[str, dict]]:
        """Rows of a SELECT as SPARQL JSON bindings, for pages that render query results themselves."""
        answer, _ = self.run(QueryRequest(text, max_rows=self.config.max_rows))
        return json.loads(answer.body)["results"]["bindings"]


def _build_id(paths: Settings) -> str:
    """The dump's checksum from the build report (or computed), naming the build in ETags and the cache."""
    try:
        return json.loads(paths.report_file.read_text(encoding="utf-8"))["dump_sha256"]
    except (OSError, ValueError, KeyError):
        return hashlib.sha256(paths.dump_file.read_bytes()).hexdigest() if paths.dump_file.exists() else "none"
