"""The server process's memory under a cache-filling load: many distinct paging queries with large answers.

    .venv/bin/python benchmarks/cache_memory.py [--queries 1000] [--concurrency 8] [-- extra serve flags]

The red-team's load: `SELECT * WHERE { ?s ?p ?o } LIMIT 10000 OFFSET n` for n = 0, 1, 2, ... (each answer
is a few MB and distinct, so each is cached). Reports the server process's RSS (workers not included) at
start and at its peak, sampled every 50 ms, and the answers' statuses.
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--build-dir", default=str(soak.REPO_ROOT / "build"))
    parser.add_argument("flags", nargs="*", help="extra `cmc-kg serve` flags (after --)")
    args = parser.parse_args(argv)
    process, url = soak.start_server(Path(args.build_dir), "--reload-interval", "0", *args.flags)
    statuses: Counter = Counter()
    offsets = iter(range(args.queries))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                offset = next(offsets, None)
            if offset is None:
                return
            body = urllib.parse.urlencode({"query": f"SELECT * WHERE {{ ?s ?p ?o }} LIMIT 10000 OFFSET {offset}"})
            try:
                with urllib.request.urlopen(f"{url}/sparql", body.encode(), timeout=60) as response:
                    response.read()
                    statuses[response.status] += 1
            except urllib.error.HTTPError as error:
                statuses[error.code] += 1
            except OSError as error:
                statuses[type(error).__name__] += 1

    try:
        start = peak = soak.status_kb(process.pid, "VmRSS") / 1024
        threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, soak.status_kb(process.pid, "VmRSS") / 1024)
            time.sleep(0.05)
        end = soak.status_kb(process.pid, "VmRSS") / 1024
        print(f"{args.queries} paging queries at concurrency {args.concurrency} in {time.monotonic() - started:.0f} s, "
              f"statuses {dict(statuses)}; server RSS (workers excluded): {start:.0f} MiB at start, "
              f"{peak:.0f} MiB at peak, {end:.0f} MiB at the end")
    finally:
        soak.stop_server(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
