"""`cmc-kg import-tables`: the committed Turtle is exactly what the reference tables give, and bad rows are named."""

from __future__ import annotations

import shutil

import pytest

from cmc_kg.settings import Paths
from cmc_kg.tables import TableError, import_tables

SETTINGS = Paths()


def test_committed_turtle_is_what_the_tables_give(tmp_path):
    written = import_tables(SETTINGS.reference_dir, tmp_path)
    assert written
    for path in written:
        committed = SETTINGS.graph_dir / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run `cmc-kg import-tables`"


def test_unknown_country_code_names_file_and_line(tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(SETTINGS.reference_dir, reference)
    table = reference / "ccm_participants_untc.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace(",AGO,", ",XXX,")
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"ccm_participants_untc\.csv:5: .*'XXX'"):
        import_tables(reference, tmp_path / "graph")


def test_common_names_are_alternative_labels_from_owid():
    """OWID's country names, where they differ from ISO's, become skos:altLabel in the OWID-CR source's graph."""
    import csv

    from rdflib import Graph, Literal

    from cmc_kg.namespaces import PREFIXES, SKOS
    from cmc_kg.settings import Paths

    settings = Paths()
    with open(settings.reference_dir / "countries_iso_wikidata_owid.csv", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    expected = {(r["iso_alpha3"], r["owid_name"]) for r in rows
                if r["row_kind"] == "iso3166_1" and r["owid_name"] and r["owid_name"] != r["iso_codes_4_15_name"]}
    graph = Graph().parse(settings.graph_dir / "owid-cr" / "common-names.ttl")
    got = {(str(s).rsplit("/", 1)[1], str(o)) for s, o in graph.subject_objects(SKOS.altLabel)}
    assert got == expected and ("LAO", "Laos") in got and ("RUS", "Russia") in got
    assert (PREFIXES["country"]["RUS"], SKOS.altLabel, Literal("Russia", lang="en")) in graph
