"""The benchmark's core runs end to end on the session's build: numbers for both servers, every answer 200.

No timing assertions: speed is measured by benchmarks/benchmark.py, not by tests.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys

import pytest

from cmc_kg.settings import REPO_ROOT


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("cmc_kg_benchmark", REPO_ROOT / "benchmarks" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.system
def test_benchmark_core_on_the_real_build(benchmark, built, tmp_path):
    lines: list[str] = []
    result = benchmark.run_graph("real", built[0].build_dir, tmp_path, duration=0.15, concurrencies=[1, 2],
                                 cache_modes=["off"], examples=True, example_duration=0.05, warmup=0.02,
                                 say=lines.append)
    mix = [q.name for q in benchmark.mix_queries()]
    assert len(mix) >= 10
    for server in ("oxigraph", "cmc-kg cache off"):
        for concurrency in (1, 2):
            table = result.mix[(server, concurrency)]
            assert list(table) == mix
            for name, measure in table.items():
                assert measure.requests > 0, (server, concurrency, name)
                assert measure.statuses == {200: measure.requests} and measure.errors == 0, (server, name, measure.statuses)
                assert not math.isnan(measure.percentile(99))
            assert result.geomean_qps(server, concurrency) > 0
    examples = result.examples["off"]
    assert len(examples) >= 15
    assert all(m.requests > 0 and m.statuses == {200: m.requests} for m in examples.values()), {
        n: m.statuses for n, m in examples.items()}
    for server in ("oxigraph", "cmc-kg cache off"):
        trivial = result.trivial[(server, 2)]
        assert all(m.requests > 0 and m.cpu_seconds is not None and m.cpu_seconds >= 0 for m in trivial.values())
    met = benchmark.report(result, [1, 2], ["off"], say=lines.append)
    assert any("ratio" in line for line in lines) and any("geometric mean" in line for line in lines)
    assert any("server CPU per request" in line for line in lines)
    assert list(met) == ["real: uncached c=1 >= 1.0x Oxigraph",  # reported, not asserted
                         "real: every example query p99 < 50 ms, cache off"]


def test_generated_graph_is_deterministic_and_cmc_shaped(benchmark, tmp_path):
    first = benchmark.generate_graph(tmp_path / "a", target_triples=5_000, seed=1)
    second = benchmark.generate_graph(tmp_path / "b", target_triples=5_000, seed=1)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text(encoding="utf-8")
    assert text.count("\n") >= 5_000
    from cmc_kg.namespaces import GRAPH, ID, INFERRED_GRAPH, PREFIXES

    for needle in (f"<{ID}action/ccm/", f"<{ID}country/LTU>", f"<{INFERRED_GRAPH}>", f"<{GRAPH}sources>",
                   f"<{PREFIXES['cmc']}ConsentToBeBound>"):
        assert needle in text, needle


@pytest.mark.slow  # a build of its own
def test_build_time_prints_each_step_in_cpu_and_wall_seconds(capsys):
    spec = importlib.util.spec_from_file_location("cmc_kg_build_time", REPO_ROOT / "benchmarks" / "build_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--runs", "1", "--no-command"]) == 0
    printed = capsys.readouterr().out
    for step in ("parse", "reason", "shacl", "checks", "write", "total"):
        assert re.search(rf"^{step}( +\d+\.\d\d){{4}}$", printed, re.MULTILINE), (step, printed)
