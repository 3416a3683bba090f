"""The command line, run as users run it."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from cmc_kg.cli import main
from cmc_kg.query import select

COMMANDS = ["build", "validate", "query", "stats", "serve", "import-tables", "export", "push", "link", "enrich"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


QUERY = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"


def test_query_as_table_csv_and_json(built):
    settings, _ = built
    args = ["query", QUERY, "--build-dir", str(settings.build_dir)]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "FRA" in table.output and "(2 rows)" in table.output
    as_csv = CliRunner().invoke(main, args + ["--format", "csv"])
    assert [row["code"] for row in csv.DictReader(io.StringIO(as_csv.output))] == ["FRA", "NOR"]
    as_json = json.loads(CliRunner().invoke(main, args + ["--format", "json"]).output)
    assert [b["code"]["value"] for b in as_json["results"]["bindings"]] == ["FRA", "NOR"]


def test_query_from_file(built, tmp_path):
    settings, _ = built
    (tmp_path / "q.rq").write_text(QUERY, encoding="utf-8")
    result = CliRunner().invoke(main, ["query", "--file", str(tmp_path / "q.rq"), "--format", "csv",
                                       "--build-dir", str(settings.build_dir)])
    assert result.exit_code == 0 and result.output.split() == ["code", "FRA", "NOR"]


def test_malformed_query_gives_parser_message(built):
    result = CliRunner().invoke(main, ["query", "SELECT ?x WHERE { ?x", "--build-dir", str(built[0].build_dir)])
    assert result.exit_code != 0 and "Error" in result.output


def test_stats_lists_graphs_and_classes(built):
    result = CliRunner().invoke(main, ["stats", "--build-dir", str(built[0].build_dir)])
    assert result.exit_code == 0
    assert "graph/inferred" in result.output and "ontology#Country" in result.output
    counts = [line.split() for line in result.output.splitlines() if line.strip().endswith("ontology#Country")]
    assert int(counts[0][0]) == 249
    assert "countries with an M49 region: 247 (without: 2)" in result.output


def test_stats_shows_the_field_beside_its_targets(built, store):
    """The member and Monitor figures printed by `cmc-kg stats` are the graph's, with issue 11's targets."""
    output = CliRunner().invoke(main, ["stats", "--build-dir", str(built[0].build_dir)]).output
    orgs = len(select(store, "SELECT DISTINCT ?m WHERE { ?x a org:Membership ; org:member ?m "
                             "FILTER NOT EXISTS { ?m a foaf:Person } }", asserted_only=True).rows)
    assert f"member organizations: {orgs} in " in output
    assert "target (issue 11): 150 organizations from 40 countries" in output
    lines = {line.split()[-1]: line.split() for line in output.splitlines()
             if line.strip().split()[-1:] and line.strip().split()[-1].startswith(("MONITOR-", "CMC-"))}
    assert lines["MONITOR-CMM-2011-CONTAMINATION"][:2] == ["28", "2011-08-25"]
    assert lines["CMC-STOCKPILERS"][:2] == ["93", "undated"]


def test_the_link_commands_do_not_import_the_main_command_line():
    # cmc_kg/cli.py adds the link commands to `cmc-kg`; they, in turn, share only cmc_kg/console.py with it.
    import subprocess
    import sys

    check = "import sys, cmc_kg.link.cli; assert 'cmc_kg.cli' not in sys.modules, 'import cycle'"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
