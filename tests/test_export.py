"""Exports load, unchanged, into the tools people take the graph to: rdflib, Oxigraph, pandas, NetworkX."""

from __future__ import annotations

import csv
import io

import networkx
import pandas
import pyoxigraph as ox
import pytest
from click.testing import CliRunner
from rdflib import Dataset, Graph
from rdflib.compare import isomorphic

from cmc_kg import load_dataset, query
from cmc_kg.cli import main
from cmc_kg.export import DATASET_FORMATS, EXPORT_FORMATS, JSONLD_CONTEXT, TABLES, export
from cmc_kg.formats import RDF_FORMATS
from cmc_kg.namespaces import INFERRED_GRAPH
from cmc_kg.query import select
from cmc_kg.settings import Paths

RDFLIB_NAMES = {"turtle": "turtle", "ntriples": "nt", "rdfxml": "xml", "jsonld": "json-ld", "trig": "trig",
                "nquads": "nquads"}
REFERENCE = Paths().reference_dir


@pytest.fixture(scope="module")
def dataset(built):
    return load_dataset(built[0])


def _asserted_union(dataset: Dataset, inferred: bool) -> Graph:
    union = Graph()
    for graph in dataset.graphs():
        if graph.identifier != INFERRED_GRAPH or inferred:
            for triple in graph:
                union.add(triple)
    return union


# Every format as exported by default; with --inferred, one format with named graphs and one without (the
# inferred graph is left out or kept before any writer runs).
EXPORTS = [(name, False) for name in sorted(RDF_FORMATS)] + [("nquads", True), ("turtle", True)]


@pytest.mark.slow  # the whole graph through rdflib's parsers, 8 times
@pytest.mark.parametrize(("name", "inferred"), EXPORTS)
def test_rdf_export_reparses_isomorphic_and_loads_in_oxigraph(store, dataset, name, inferred):
    data = export(store, name, inferred)
    fmt = RDF_FORMATS[name]
    if name in DATASET_FORMATS:
        parsed = Dataset()
        parsed.parse(data=data, format=RDFLIB_NAMES[name])
        expected = {g.identifier: g for g in dataset.graphs() if len(g) and (inferred or g.identifier != INFERRED_GRAPH)}
        got = {g.identifier: g for g in parsed.graphs() if len(g)}
        assert set(got) == set(expected)
        assert all(isomorphic(got[name], expected[name]) for name in expected)
    else:
        parsed = Graph().parse(data=data, format=RDFLIB_NAMES[name])
        assert isomorphic(parsed, _asserted_union(dataset, inferred))
    loaded = ox.Store()
    loaded.load(data, format=fmt.rdf_format)
    assert len(loaded) == sum(len(g) for g in (parsed.graphs() if name in DATASET_FORMATS else [parsed]))


def test_jsonld_is_compacted_with_the_published_context(store):
    data = export(store, "jsonld").decode("utf-8")
    assert '"@context"' in data and '"cmc:isoAlpha3"' in data
    assert JSONLD_CONTEXT["@context"]["cmc"].endswith("ontology#")


def _reference_rows(name):
    with open(REFERENCE / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_treaty_status_table_in_pandas(store):
    frame = pandas.read_csv(io.BytesIO(export(store, "csv-treaty-status")))
    assert list(frame.columns)[:4] == ["iso3", "state", "treatyName", "signed"]
    participants = sum(len(_reference_rows(f)) for f in ("ccm_participants_untc.csv", "mbt_participants_untc.csv",
                                                        "ccw_participants_untc.csv", "ccw_protocols_participants_untc.csv"))
    assert len(frame) == participants
    ccm = frame[frame.treatyName == "Convention on Cluster Munitions"]
    assert ccm.status.value_counts().to_dict() == {"party": 112, "signatory": 12, "withdrawn": 1}
    lithuania = ccm[ccm.iso3 == "LTU"].iloc[0]
    assert (lithuania.withdrawalNotified, lithuania.withdrawalEffective) == ("2024-09-06", "2025-03-06")
    mbt = frame[frame.treatyName == "Mine Ban Treaty"]
    assert mbt.status.value_counts()["party, withdrawal pending"] == 1


def test_organization_and_membership_tables_in_pandas(store):
    organizations = pandas.read_csv(io.BytesIO(export(store, "csv-organizations")))
    assert list(organizations.columns) == ["organization", "name", "types", "kinds", "countries", "countryNames",
                                           "sources"]
    expected = select(store, """SELECT (COUNT(DISTINCT ?o) AS ?n) WHERE { ?o a/rdfs:subClassOf* org:Organization
                                FILTER (STRSTARTS(STR(?o), STR(id:))) }""").rows[0]["n"]
    assert len(organizations) == int(expected) and organizations.organization.is_unique
    memberships = pandas.read_csv(io.BytesIO(export(store, "csv-memberships")))
    assert list(memberships.columns) == ["membership", "member", "memberName", "organization", "organizationName",
                                         "role", "from", "until", "sources"]
    assert len(memberships) == int(select(store, "SELECT (COUNT(DISTINCT ?m) AS ?n) WHERE { ?m a org:Membership }")
                                   .rows[0]["n"])
    mac = memberships[(memberships.memberName == "Mines Action Canada") & (memberships.role == "founding member")]
    assert mac.iloc[0]["from"] == "2003-11"


def test_graphml_loads_in_networkx(store):
    graph = networkx.read_graphml(io.BytesIO(export(store, "graphml")))
    kinds = networkx.get_node_attributes(graph, "kind")
    states = select(store, """SELECT (COUNT(DISTINCT ?s) AS ?n) WHERE {
        { ?x cmc:country ?s } UNION { ?a a cmc:ConsentToBeBound ; cmc:actor ?s } }""").rows[0]["n"]
    assert sum(1 for k in kinds.values() if k == "state") == int(states)
    assert sum(1 for k in kinds.values() if k == "coalition") >= 1
    relations = networkx.get_edge_attributes(graph, "relation")
    committee = next(n for n, label in networkx.get_node_attributes(graph, "label").items()
                     if label == "CMC Steering Committee")
    steering = {u for (u, v, *_), r in relations.items() if v == committee and r == "steering committee member"}
    assert len(steering) > 0 and len(steering) == int(select(store, """SELECT (COUNT(DISTINCT ?m) AS ?n) WHERE {
        ?x org:member ?m ; org:organization kgorg:cmc-steering-committee ;
           org:role cmc:SteeringCommitteeMemberRole }""").rows[0]["n"])
    assert graph.number_of_edges() == len(relations) > 500


def test_export_command_writes_a_file(built, tmp_path):
    out = tmp_path / "cmc.nt"
    result = CliRunner().invoke(main, ["export", "--format", "ntriples", "-o", str(out),
                                       "--build-dir", str(built[0].build_dir)])
    assert result.exit_code == 0, result.output
    assert len(Graph().parse(out, format="nt")) > 10_000
    assert set(EXPORT_FORMATS) >= set(RDF_FORMATS) | {f"csv-{t}" for t in TABLES} | {"graphml"}


def test_python_api(built):
    rows = query("SELECT ?name WHERE { country:NOR rdfs:label ?name }", built[0])
    assert rows == [{"name": "Norway"}]
    frame = pandas.DataFrame(query("SELECT ?state ?date WHERE { ?a a cmc:Signature ; cmc:treaty treaty:ccm ; "
                                   "cmc:actor ?state ; cmc:date ?date }", built[0]))
    assert list(frame.columns) == ["state", "date"] and len(frame) >= 107
    dataset = load_dataset(built[0], inferred=False)
    assert INFERRED_GRAPH not in {g.identifier for g in dataset.graphs() if len(g)}


@pytest.mark.parametrize("fmt", ["csv-treaty-status", "graphml"])
def test_inferred_is_refused_where_it_would_change_nothing(built, tmp_path, fmt):
    """Tables and GraphML are fixed views: --inferred is refused rather than silently ignored."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "--format", fmt, "--inferred", "-o", str(out),
                                       "--build-dir", str(built[0].build_dir)])
    assert result.exit_code == 2 and "RDF formats only" in result.output and not out.exists()


def test_the_organizations_table_names_each_country_beside_its_code(store):
    organizations = pandas.read_csv(io.BytesIO(export(store, "csv-organizations")), keep_default_na=False)
    with_country = organizations[organizations.countries != ""]
    assert len(with_country) > 10
    assert all(len(codes.split("; ")) == len(names.split("; ")) and names
               for codes, names in zip(with_country.countries, with_country.countryNames))
    new_zealand = with_country[with_country.countries == "NZL"]
    assert set(new_zealand.countryNames) == {"New Zealand"}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_spreadsheet_tables_are_the_plain_tables_after_a_byte_order_mark(store, table):
    plain, for_spreadsheets = export(store, f"csv-{table}"), export(store, f"csv-excel-{table}")
    assert for_spreadsheets == "\ufeff".encode("utf-8") + plain and not plain.startswith(b"\xef\xbb\xbf")
    assert pandas.read_csv(io.BytesIO(for_spreadsheets)).columns[0] == pandas.read_csv(io.BytesIO(plain)).columns[0]


def test_spreadsheet_csv_keeps_accented_names_when_read_as_excel_does(store):
    # Excel takes a CSV file for UTF-8 only when it starts with a byte-order mark, else for the legacy code page.
    text = export(store, "csv-excel-treaty-status")
    as_excel_reads = text.decode("utf-8-sig") if text.startswith(b"\xef\xbb\xbf") else text.decode("cp1252")
    assert "Côte d'Ivoire" in as_excel_reads and "Türkiye" in as_excel_reads
    assert "Côte d'Ivoire" not in export(store, "csv-treaty-status").decode("cp1252")  # the garbling it avoids


def test_the_endpoint_answers_csv_for_spreadsheets(store):
    from conftest import in_process_server

    client = in_process_server(store, "http://csv-excel.test", cache_entries=0).client
    query_text = 'SELECT ?name WHERE { ?c cmc:isoAlpha3 "CIV" ; rdfs:label ?name }'
    answer = client.get("/sparql", query_string={"query": query_text, "format": "csv-excel"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.data.decode("utf-8") == "\ufeffname\r\nCôte d'Ivoire\r\n"
    plain = client.get("/sparql", query_string={"query": query_text}, headers={"Accept": "text/csv"})
    assert plain.data.decode("utf-8") == "name\r\nCôte d'Ivoire\r\n"
