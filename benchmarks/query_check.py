"""How long the query check (cmc_kg/safety.py) takes on hostile bodies of the largest size the server accepts.

    .venv/bin/python benchmarks/query_check.py [--megabytes 1]

Each body is built to defeat a scanner: unclosed long strings (quadratic before), runs of quotes, '<'
that reads as an IRI or an operator, comments, many tokens. Prints the best of three runs per body.
"""

from __future__ import annotations

import argparse
import time

from cmc_kg.safety import QueryError, QueryRefused, inspect

BODIES = {
    "unclosed ''' after \\": "\\'''",
    'unclosed """ after \\': '\\"""',
    "single quotes": "'",
    "closed long strings": "'''a''' ",
    "'<' as IRI or operator": "?a<'a>' ",
    "comments": "#x\n",
    "triple patterns": "?s ?p ?o . ",
    "IRIs with quotes": "<a'b> ",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    size = int(parser.parse_args(argv).megabytes * 1_000_000)
    for name, unit in BODIES.items():
        text = ("ASK {}" + unit * (size // len(unit)))[:size]
        best, outcome = float("inf"), ""
        for _ in range(3):
            started = time.perf_counter()
            try:
                inspect(text)
                outcome = "passes"
            except (QueryError, QueryRefused) as refused:
                outcome = f"{type(refused).__name__}: {str(refused)[:60]}"
            best = min(best, time.perf_counter() - started)
        print(f"{name:28} {len(text) / 1e6:.2f} MB  {best:6.3f} s  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
