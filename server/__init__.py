"""The cmc-kg server: one Flask application factory, the query engine injected.

Blueprints: `sparql` (the SPARQL 1.1 protocol at /sparql), `ui` (the query page), `pages` (entity,
ontology and graph pages, VoID, dumps), `explore` (treaty status and coalition network pictures). Each reaches the engine and settings through `server.state`.
"""

from __future__ import annotations

from flask import Flask, Response, request

from cmc_kg.settings import ServerConfig

from .state import State

__all__ = ["create_app"]


def create_app(config: ServerConfig | None = None, engine=None) -> Flask:
    """Build the application.

    :param config: server settings (defaults when None).
    :param engine: a :class:`cmc_kg.contract.QueryEngine`; when None, the one the settings ask for (worker
        processes over the latest build, or the remote engine of ``store``).
    :returns: the Flask application; its ``extensions["cmc_kg"]`` holds the :class:`State`.
    """
    config = config or ServerConfig()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.extensions["cmc_kg"] = State.start(config, engine)

    from .explore import bp as explore
    from .pages import bp as pages
    from .sparql import bp as sparql
    from .ui import bp as ui

    app.register_blueprint(sparql)
    app.register_blueprint(ui)
    app.register_blueprint(pages)
    app.register_blueprint(explore)

    @app.after_request
    def cors(response: Response) -> Response:
        # Any origin may read answers (as on Wikidata's and DBpedia's endpoints); credentials are never sent.
        response.headers["Access-Control-Allow-Origin"] = "*"
        # Browsers take every answer as its declared media type, never as HTML or script they sniffed.
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
            response.headers["Access-Control-Max-Age"] = "86400"
        return response

    @app.get("/health")
    def health():
        state = State.current()
        # Two counts, named: the quads of the named graphs (what the build reports as asserted + inferred) and the
        # triples of the merged default graph, where a fact stated by two sources counts once.
        return {"status": "ok", "build": state.build_id, "triples": state.triples,
                "default_graph_triples": state.triples, "quads": state.quads()}

    return app
