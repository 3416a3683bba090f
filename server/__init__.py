"""The cmc-kg server: one Flask application factory, the query engine injected.

Blueprints: `sparql` (the SPARQL 1.1 protocol at /sparql), `ui` (the query page), `pages` (entity,
ontology and graph pages, VoID, dumps), `explore` (treaty status and coalition network pictures). Each reaches the engine and settings through `server.state`.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, Response

from cmc_kg.contract import EngineBusy, NotAcceptable, OutOfMemory, QueryTimeout, WorkerCrashed
from cmc_kg.query import QueryError
from cmc_kg.settings import Settings

from .admission import TooManyQueries
from .responses import compress, cors, error
from .state import State

__all__ = ["create_app"]

# Errors any page's query may raise, answered the same on /sparql, entity pages, the ontology and VoID.


def _unavailable(stopped: Exception) -> Response:
    """Any page whose query was stopped or found no worker (entity pages, the ontology, VoID): 503, never 500."""
    response = error(503, f"{stopped}; try again")
    response.headers["Retry-After"] = "1"
    return response


def _not_retried(failure: Exception) -> Response:
    """A query that crashed or exhausted its worker would do so again: no Retry-After (500 for a crash, which is
    a defect; 503 for memory, which the service cannot afford)."""
    return error(500 if isinstance(failure, WorkerCrashed) else 503, str(failure))


def _throttled(refused: TooManyQueries) -> Response:
    """A client over its share of the query workers (server/admission.py), on /sparql or any page: 429."""
    response = error(429, str(refused))
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def _not_acceptable(refused: NotAcceptable) -> Response:
    """406: the client accepts no format of the answer's kind ('results', 'graph'), or the format chosen cannot
    hold this answer (a writer's NotRepresentable, with its reason), on /sparql and on every page."""
    message = str(refused)
    if message in ("results", "graph"):
        message = f"the query gives {message} and none of the accepted media types can hold them"
    response = error(406, message)
    response.vary.add("Accept")
    return response


def _malformed(malformed: QueryError) -> Response:
    """A page whose address gives a query Oxigraph cannot parse (an IRI it refuses): the client's request is bad."""
    return error(400, f"this address does not name anything a query can ask about: {malformed}")


ERROR_HANDLERS: list[tuple[tuple[type[Exception], ...], Callable[[Any], Response]]] = [
    ((QueryTimeout, EngineBusy), _unavailable), ((WorkerCrashed, OutOfMemory), _not_retried),
    ((TooManyQueries,), _throttled), ((NotAcceptable,), _not_acceptable), ((QueryError,), _malformed)]


def create_app(config: Settings | None = None, engine=None) -> Flask:
    """Build the application.

    :param config: server settings (defaults when None).
    :param engine: a :class:`cmc_kg.contract.QueryEngine`; when None, the one the settings ask for (worker
        processes over the latest build, or the remote engine of ``store``).
    :returns: the Flask application; its ``extensions["cmc_kg"]`` holds the :class:`State`.
    """
    config = config or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.extensions["cmc_kg"] = State.start(config, engine)

    from .explore import bp as explore
    from .pages import bp as pages
    from .sparql import FastPath, bp as sparql
    from .ui import bp as ui

    app.register_blueprint(sparql)
    app.register_blueprint(ui)
    app.register_blueprint(pages)
    app.register_blueprint(explore)

    for exceptions, handler in ERROR_HANDLERS:
        for exception in exceptions:
            app.register_error_handler(exception, handler)

    @app.after_request
    def http(response: Response) -> Response:
        # Browsers take every answer as its declared media type, never as HTML or script they sniffed.
        response.headers["X-Content-Type-Options"] = "nosniff"
        return cors(compress(response))

    app.wsgi_app = FastPath(app)  # type: ignore[method-assign]  # the common /sparql request, without Flask

    @app.get("/health")
    def health():
        state = State.current()
        # Two counts, named: the quads of the named graphs (what the build reports as asserted + inferred) and the
        # triples of the merged default graph, where a fact stated by two sources counts once.
        # The embedded engine says whether its workers deny themselves network sockets (cmc_kg/engine.py).
        return {"status": "ok", "build": state.build_id, "triples": state.triples,
                "default_graph_triples": state.triples, "quads": state.quads(),
                "network_filter": state.engine.network_filter}

    return app
