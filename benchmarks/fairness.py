"""Cheap-query latency while N clients each keep sending costly queries, with and without fair sharing.

Starts `cmc-kg serve` on 127.0.0.1 (answer cache off, so that every cheap query is evaluated) twice: with the
default fair sharing of the query workers and with --no-fair-share. In each run, N costly clients each send a
cross product that runs until the time limit, again and again (0.1 s after each answer, whatever it was: they
ignore Retry-After), while one cheap client sends a small lookup every 0.05 s and times it. Every client
connects from its own loopback address (127.0.0.2, 127.0.0.3, ...), which Linux routes to the server like any
other client address.

Reports, per run: the cheap queries' statuses and latency (p50, p99, max, whatever the status), over the
whole run and after the onset (once every costly client has had one query stopped at the limit: until then
a client never seen before can start one costly query on the worker kept for others), and the costly
clients' statuses.

    .venv/bin/python benchmarks/fairness.py --costly-clients 2 --duration 60
    .venv/bin/python benchmarks/fairness.py --costly-clients 3 --duration 30 --query-timeout 5 --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak  # noqa: E402  (starting and stopping a server, percentiles)

COSTLY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
CHEAP = "SELECT ?code WHERE {{ ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', '{code}')) }}"
CODES = ["NOR", "DEU", "ITA", "ESP", "BEL", "AUT", "CHE", "SWE"]


def client_address(index: int) -> str:
    """A loopback address of its own for client ``index`` (0: 127.0.0.2)."""
    return f"127.0.{(index + 2) // 254}.{(index + 2) % 254 or 254}"


def ask(url: str, text: str, source: str | None, timeout: float) -> tuple[int | str, float, bytes]:
    """One POST of a query: (status or error name, seconds, body)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                            source_address=(source, 0) if source else None)
    started = time.monotonic()
    try:
        connection.request("POST", "/sparql", body=urllib.parse.urlencode({"query": text}),
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "Accept": "application/sparql-results+json"})
        response = connection.getresponse()
        return response.status, time.monotonic() - started, response.read()
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__, time.monotonic() - started, b""
    finally:
        connection.close()


def measure(url: str, costly_clients: int, duration: float, query_timeout: float, pause: float = 0.05,
            after_onset: float | None = None) -> dict:
    """Run the load against a server; every loop ends by ``duration`` (plus one request's time), or ``after_onset``
    seconds after the onset (below) when that comes first."""
    stop = threading.Event()
    deadline = time.monotonic() + duration
    request_timeout = 2 * query_timeout + 15
    costly: list[tuple[int, float, object]] = []     # (client, when answered, status)
    cheap: list[tuple[float, float, object]] = []    # (when sent, seconds, status)
    first_stopped: dict[int, float] = {}             # client -> when its first query was stopped at the limit
    lock = threading.Lock()

    def costly_client(index: int) -> None:
        source = client_address(1 + index)
        while not stop.is_set() and time.monotonic() < deadline:
            status, _, body = ask(url, COSTLY, source, request_timeout)
            if status == 503:
                status = "503 stopped" if b"was stopped" in body else "503 no worker"
            with lock:
                costly.append((index, time.monotonic(), status))
                if status == "503 stopped":
                    first_stopped.setdefault(index, time.monotonic())
            stop.wait(0.1)

    def cheap_client() -> None:
        source = client_address(0)
        for n in range(10**7):
            if stop.is_set() or time.monotonic() >= deadline:
                return
            sent = time.monotonic()
            status, seconds, _ = ask(url, CHEAP.format(code=CODES[n % len(CODES)]), source, request_timeout)
            with lock:
                cheap.append((sent, seconds, status))
            stop.wait(pause)

    started = time.monotonic()
    threads = [threading.Thread(target=costly_client, args=(i,), daemon=True) for i in range(costly_clients)]
    threads.append(threading.Thread(target=cheap_client, daemon=True))
    for thread in threads:
        thread.start()

    def onset() -> float:
        """The onset's end: until each costly client has had one query run to the limit, it is not known to be
        heavy (infinity while one has not)."""
        with lock:
            return max(first_stopped.values()) if len(first_stopped) == costly_clients else float("inf")

    while time.monotonic() < deadline:
        if after_onset is not None and time.monotonic() >= onset() + after_onset:
            break
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=request_timeout + 5)
    onset_end = onset()

    def summary(rows) -> dict:
        seconds = [s for _, s, _ in rows]  # every answer, 503s included: the time the client waited
        return {"queries": len(rows), "statuses": dict(Counter(str(status) for _, _, status in rows)),
                "latency_ms": {name: round(soak.percentile(seconds, q) * 1000, 1)
                               for name, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))}}

    return {
        "costly_clients": costly_clients,
        "duration_s": round(time.monotonic() - started, 1),
        "query_timeout_s": query_timeout,
        "onset_s": round(onset_end - started, 1) if onset_end != float("inf") else None,
        "cheap": summary(cheap),
        "cheap_after_onset": summary([row for row in cheap if row[0] >= onset_end]),
        "costly_statuses": dict(Counter(str(status) for _, _, status in costly)),
        "slowest_cheap": sorted(((round(sent - started, 2), round(seconds, 3), status)
                                 for sent, seconds, status in cheap), key=lambda row: -row[1])[:5],
    }


def run(build_dir: Path, costly_clients: int, duration: float, query_timeout: float, fair: bool,
        extra: tuple[str, ...] = ()) -> dict:
    # One stopped query makes a client heavy, as with the default settings (heavy_seconds 5, query_timeout 10).
    heavy = min(5.0, query_timeout / 2)
    flags = ["--query-timeout", str(query_timeout), "--heavy-seconds", str(heavy), "--workers", "2",
             "--cache-entries", "0", "--reload-interval", "0", "--fair-share" if fair else "--no-fair-share", *extra]
    process, url = soak.start_server(build_dir, *flags)
    try:
        report = measure(url, costly_clients, duration, query_timeout)
    finally:
        soak.stop_server(process)
    report["fair_share"] = fair
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--costly-clients", type=int, default=2, help="clients sending costly queries (default 2)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per run (default 60)")
    parser.add_argument("--query-timeout", type=float, default=10.0, help="the servers' query_timeout (default 10)")
    parser.add_argument("--build-dir", default=str(soak.REPO_ROOT / "build"), help="build to serve (default build/)")
    parser.add_argument("--only", choices=["fair", "unfair"], help="one run instead of both")
    parser.add_argument("--url", help="measure an endpoint already running (such as cmc-kg behind nginx; its cache "
                                      "should be off) instead of starting servers")
    parser.add_argument("--quick-lane", type=float, default=None,
                        help="the servers' quick_lane in seconds (default: the server's default; 0: no lane)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    extra = ("--quick-lane", str(args.quick_lane)) if args.quick_lane is not None else ()
    if not 0 < args.duration <= 3600 or not 0 < args.costly_clients <= 200:
        parser.error("--duration must be in (0, 3600] and --costly-clients in (0, 200]")
    if args.url:
        reports = [{**measure(args.url, args.costly_clients, args.duration, args.query_timeout), "fair_share": None}]
    else:
        build_dir = Path(args.build_dir)
        if not (build_dir / "cmc-kg.nq").exists():
            parser.error(f"{build_dir}/cmc-kg.nq does not exist: run `cmc-kg build` first")
        modes = [args.only == "fair"] if args.only else [True, False]
        reports = [run(build_dir, args.costly_clients, args.duration, args.query_timeout, fair, extra)
                   for fair in modes]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for report in reports:
        name = {True: "fair sharing on ", False: "fair sharing off", None: args.url}[report["fair_share"]]
        for part, label in (("cheap", "whole run"), ("cheap_after_onset", f"after onset ({report['onset_s']} s)")):
            cheap = report[part]
            latency = cheap["latency_ms"]
            print(f"{name} | {report['costly_clients']} costly clients, limit {report['query_timeout_s']:g} s | "
                  f"{label}: {cheap['queries']} cheap queries {cheap['statuses']}, p50 {latency['p50']} ms, "
                  f"p99 {latency['p99']} ms, max {latency['max']} ms")
        print(f"{name} | costly answers: {report['costly_statuses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
