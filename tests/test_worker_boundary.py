"""The server reads what a query worker sends as framed bytes, never as pickle: a worker that was taken over
cannot run code in the server, and it cannot make the server read without bound. Where the network filter
cannot be installed, the server says so."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import urllib.request

import pytest

from cmc_kg import engine as engine_module
from cmc_kg.contract import QueryRequest
from cmc_kg.engine import Engine, WorkerProtocolError
from cmc_kg.settings import Settings
from cmc_kg.server import create_app

from conftest import start_server, stop_server

# A worker that starts as a real one would, then answers every query with the reply named in argv[4].
HOSTILE_WORKER = textwrap.dedent('''
    import json, os, pickle, struct, sys
    from cmc_kg import engine

    replies, kind, marker = int(sys.argv[3]), sys.argv[4], sys.argv[5]

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    exploit = pickle.dumps(("ok", Exploit()))
    header = engine._HEADER
    reply = {
        "pickle": struct.pack("!i", len(exploit)) + exploit,  # what the server used to unpickle
        "garbage": bytes(range(256)) * 4,
        "huge": header.pack(engine._MAGIC, 1, 1, 0, 2, 1 << 31) + b"{}",
        "not-json": header.pack(engine._MAGIC, 1, 1, 0, 2, 0) + b"\\xff\\xfe",
        "unknown-format": engine._frame("ok", {"format": "pickle", "rows": 0, "seconds": 0.0}, b"x", "results"),
        # a second reply the next query would otherwise take for its answer
        "two-replies": engine._frame("ok", {"format": "json", "rows": 1, "seconds": 0.0}, b"{}", "boolean") * 2,
    }[kind]
    os.write(replies, engine._frame("ready", {"triples": 1, "graphs": [], "network_filter": "installed"}))
    while os.read(int(sys.argv[2]), 1 << 16):
        os.write(replies, reply)
''')


@pytest.mark.parametrize("reply", ["pickle", "garbage", "huge", "not-json", "unknown-format", "two-replies"])
def test_a_worker_that_sends_pickle_or_garbage_gets_a_clean_500_and_runs_nothing(built, tmp_path, monkeypatch, reply):
    script, marker = tmp_path / "hostile_worker.py", tmp_path / "exploited"
    script.write_text(HOSTILE_WORKER)

    # The options and pipes come after the command; the hostile worker takes two more arguments, placed first.
    class Hostile(engine_module._Worker):
        def __init__(self, options, dump_fd, start_timeout=120.0):
            self.command = (sys.executable, "-c", f"import sys, runpy; sys.argv[4:] = [{reply!r}, {str(marker)!r}]; "
                            f"runpy.run_path({str(script)!r})")
            super().__init__(options, dump_fd, start_timeout)

    monkeypatch.setattr(engine_module, "_Worker", Hostile)
    engine = Engine(built[0].dump_file, workers=1, timeout=30)
    try:
        first = engine.worker_pids()
        started = time.monotonic()
        with pytest.raises(WorkerProtocolError):
            engine.run(QueryRequest("ASK {}"))
        assert time.monotonic() - started < 20, "the server waited for bytes the header promised"
        assert not marker.exists(), "the server unpickled what the worker sent"
        deadline = time.monotonic() + 30
        while engine.worker_pids() in ([], first) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.worker_pids() not in ([], first), "the worker that sent it was not replaced"

        client = create_app(Settings(cache_entries=0), engine=engine).test_client()
        response = client.get("/sparql", query_string={"query": "ASK {}"})
        assert response.status_code == 500
        assert not marker.exists()
    finally:
        engine.close()


def test_a_real_worker_round_trips_answers_through_the_frames(built):
    engine = Engine(built[0].dump_file, workers=1, timeout=30)
    try:
        answer = engine.run(QueryRequest("SELECT ?g WHERE { GRAPH ?g {} } ORDER BY ?g LIMIT 3", max_rows=2))
        assert (answer.kind, answer.format, answer.rows, answer.truncated) == ("results", "json", 2, True)
        assert len(json.loads(answer.body)["results"]["bindings"]) == 2
        graph = engine.run(QueryRequest("CONSTRUCT { ?s a ?o } WHERE { ?s a ?o } LIMIT 1", graph_format="ntriples"))
        assert (graph.kind, graph.rows, graph.body.count(b"\n")) == ("graph", 1, 1)
        assert engine.network_filter == "installed"
    finally:
        engine.close()


# The real worker, with the platform it sees changed to one the seccomp filter is not written for.
ELSEWHERE_WORKER = ("import platform, sys, runpy; platform.machine = lambda: 'riscv64'; "
                    "runpy.run_module('cmc_kg.engine', run_name='__main__')")


def test_where_the_network_filter_cannot_be_installed_the_server_says_so(built, monkeypatch, capfd):
    monkeypatch.setattr(engine_module._Worker, "command", (sys.executable, "-c", ELSEWHERE_WORKER))
    engine = Engine(built[0].dump_file, workers=1, timeout=30)
    try:
        assert engine.network_filter.startswith("unavailable: ") and "riscv64" in engine.network_filter
        assert "cannot deny themselves network sockets" in capfd.readouterr().err
        assert engine.run(QueryRequest("ASK { ?s ?p ?o }")).body  # it still answers
        health = create_app(Settings(cache_entries=0), engine=engine).test_client().get("/health").get_json()
        assert health["network_filter"] == engine.network_filter
    finally:
        engine.close()


def test_health_of_a_served_build_says_the_network_filter_is_installed(built):
    live = start_server(built[0].build_dir)
    try:
        with urllib.request.urlopen(f"{live.url}/health", timeout=30) as response:
            assert json.load(response)["network_filter"] == "installed"
    finally:
        stop_server(live)
