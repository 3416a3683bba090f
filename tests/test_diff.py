"""`cmc-kg diff`: between the repository's build and a build refreshed from changed depositary pages, exactly
the changes the pages make, as Markdown and as RDF that the shapes accept and SPARQL can query."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pyoxigraph as ox
import pytest
from rdflib import Graph

from cmc_kg import untc
from cmc_kg.build import build
from cmc_kg.diff import diff, load_snapshot, to_markdown, to_rdf
from cmc_kg.namespaces import CMC, PREFIXES
from cmc_kg.settings import REPO_ROOT, Paths
from cmc_kg.tables import import_tables
from cmc_kg.validate import load_shapes, validate_shapes
from test_refresh import changed_pages, write_pages


@pytest.fixture(scope="module")
def changed_build(tmp_path_factory) -> Paths:
    """The repository refreshed from the changed copies of the depositary's pages, and built."""
    root = tmp_path_factory.mktemp("changed")
    for folder in ("ontology", "graph", "reference"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    untc.refresh_untc(root / "reference", write_pages(changed_pages(), root / "pages"), "2026-02-11",
                      sources_file=root / "graph" / "sources.ttl")
    import_tables(root / "reference", root / "graph")
    settings = Paths(root=root)
    build(settings)
    return settings


@pytest.fixture(scope="module")
def changes(built, changed_build):
    return diff(load_snapshot(built[0].build_dir), load_snapshot(changed_build.build_dir))


def test_a_build_has_no_changes_from_itself(built):
    snapshot = load_snapshot(built[0].dump_file)
    assert diff(snapshot, snapshot) == []
    assert "No changes." in to_markdown([], "a", "b")


@pytest.mark.slow  # a build of its own (changed_build)
def test_changed_pages_give_exactly_their_changes(changes):
    action, note, source = PREFIXES["action"], PREFIXES["note"], PREFIXES["source"]
    assert [(c.kind, c.subject) for c in changes] == [
        (CMC.BecameParty, f"{action}ccm/FIN/accession"),
        (CMC.WithdrawalNotified, f"{action}mbt/ALB/withdrawal-notification"),
        (CMC.TreatyActionAdded, f"{action}ccm/FIN/entry-into-force"),
        (CMC.NoteAdded, f"{note}ccm/9"),
        (CMC.NoteAdded, f"{note}mbt/13"),
        (CMC.SourceUpdated, f"{source}untc"),
        (CMC.SourceUpdated, f"{source}untc-art17"),
    ]
    assert (changes[-2].old, changes[-2].new) == ("2026-02-03", "2026-02-10")
    assert changes[0].new == "2026-02-05" and "accession" in changes[0].text
    assert "2026-08-06" in changes[1].text


@pytest.mark.slow  # a build of its own (changed_build)
def test_markdown_groups_the_changes_for_a_changelog(changes):
    text = to_markdown(changes, "2026.02", "2026.03")
    assert text.startswith("# Changes from 2026.02 to 2026.03\n")
    assert "## States that became parties (1)\n\n- Finland, Convention on Cluster Munitions: accession 2026-02-05" in text
    assert "## Withdrawals notified (1)" in text and "## States that became signatories" not in text


@pytest.mark.slow  # a build of its own (changed_build)
def test_rdf_changes_conform_to_the_shape_and_can_be_queried(changes):
    graph = to_rdf(changes, "2026.02", "2026.03")
    settings = Paths()
    assert validate_shapes(graph, load_shapes(settings.shapes_dir), Graph().parse(settings.ontology_file)) == []
    store = ox.Store()
    store.load(graph.serialize(format="nt").encode(), format=ox.RdfFormat.N_TRIPLES)
    rows = list(store.query(f"SELECT ?state WHERE {{ ?c a <{CMC.Change}> ; <{CMC.changeKind}> <{CMC.BecameParty}> ; "
                            f"<http://purl.org/dc/terms/references> ?state ; <{CMC.sinceVersion}> \"2026.02\" . "
                            f"FILTER(STRSTARTS(STR(?state), \"{PREFIXES['country']}\")) }}"))
    assert [row["state"].value for row in rows] == [f"{PREFIXES['country']}FIN"]


@pytest.mark.slow  # a build of its own (changed_build)
def test_diff_command_writes_markdown_and_rdf(built, changed_build, tmp_path):
    result = subprocess.run([sys.executable, "-m", "cmc_kg.cli", "diff", str(built[0].build_dir),
                             str(changed_build.dump_file), "--rdf", str(tmp_path / "changes.ttl")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "- Albania, Mine Ban Treaty: withdrawal notified 2026-02-06 (to take effect 2026-08-06)" in result.stdout
    assert len(list(Graph().parse(tmp_path / "changes.ttl").subjects(predicate=CMC.changeKind))) == 7
    missing = subprocess.run([sys.executable, "-m", "cmc_kg.cli", "diff", str(tmp_path), str(changed_build.dump_file)],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "holds no cmc-kg.nq" in missing.stderr


@pytest.mark.system  # a build of its own (changed_build) and a `cmc-kg serve`
def test_release_records_its_sources_and_changes_and_the_server_shows_them(built, changed_build, tmp_path):
    """Release 2026.02 of the repository's build, then 2026.03 of the changed build: release.json, checksums,
    CHANGES.md beside the dump; /dumps/ names the release, the entity page of the new party says what changed."""
    import hashlib
    import json
    import urllib.request

    from cmc_kg.release import ReleaseError, make_release
    from conftest import start_server, stop_server

    releases = tmp_path / "releases"
    first = make_release(built[0], "2026.02", None, releases, today="2026-02-04")
    assert first["since"] is None and first["sources_as_at"]["ISO-CODES"] == ""
    second = make_release(changed_build, "2026.03", releases / "2026.02", releases, today="2026-02-11")
    assert (second["since"], second["changes"]) == ("2026.02", 7)
    assert (first["sources_as_at"]["UNTC"], second["sources_as_at"]["UNTC"]) == ("2026-02-03", "2026-02-10")
    build_dir = changed_build.build_dir
    assert json.loads((build_dir / "release.json").read_text()) == second
    assert second["files"]["cmc-kg.nq"]["sha256"] == hashlib.sha256(changed_build.dump_file.read_bytes()).hexdigest()
    assert (releases / "2026.03" / "SHA256SUMS").read_text().count("\n") == 3
    with pytest.raises(ReleaseError, match="never overwritten"):
        make_release(changed_build, "2026.03", None, releases)
    with pytest.raises(ReleaseError, match="version"):
        make_release(changed_build, "../x", None, releases)

    server = start_server(build_dir, "--workers", "1")
    try:
        def page(path):
            request = urllib.request.Request(server.url + path, headers={"Accept": "text/html"})
            return urllib.request.urlopen(request, timeout=120).read().decode()

        dumps = page("/dumps/")
        assert "Release 2026.03" in dumps and "7 changes since release 2026.02" in dumps
        assert second["files"]["CHANGES.md"]["sha256"] in dumps
        assert page("/dumps/CHANGES.md") == (build_dir / "CHANGES.md").read_text()
        finland = page("/id/country/FIN")
        assert "Changed since release 2026.02" in finland
        assert "Finland, Convention on Cluster Munitions: accession 2026-02-05" in finland
        assert "Changed since release" not in page("/id/country/FRA")
        ccm = page("/explore/treaty/ccm")
        assert "Changed since release 2026.02" in ccm
        assert "Finland, Convention on Cluster Munitions: accession 2026-02-05" in ccm
        assert "Changed since release" not in page("/explore/treaty/ccw")
    finally:
        stop_server(server)
