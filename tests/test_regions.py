"""UN M49 regions: the graph against reference/m49_regions.csv, and the region example queries against the
counts recomputed from the reference tables (the M49 table joined with the UNTC participant tables)."""

from __future__ import annotations

import csv
from collections import Counter

from cmc_kg.namespaces import PREFIXES
from cmc_kg.query import example_queries, select
from cmc_kg.settings import Paths

SETTINGS = Paths()
AS_AT = "2026-02-03"
QUERIES = {q.path.stem: q for q in example_queries(SETTINGS)}
M49 = PREFIXES["m49"]


def _table(name: str) -> list[dict[str, str]]:
    with open(SETTINGS.reference_dir / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


AREAS = {r["alpha-3"]: r for r in _table("m49_regions.csv")}
CCM = _table("ccm_participants_untc.csv")
MBT = _table("mbt_participants_untc.csv")
ISO = {r["iso_alpha3"] for r in _table("countries_iso_wikidata_owid.csv") if r["row_kind"] == "iso3166_1"}


def _parties(table, on: str = AS_AT) -> set[str]:
    return {r["iso3"] for r in table if r["consent_date"] and r["consent_date"] <= on
            and not (r.get("withdrawal_effective_date") and r["withdrawal_effective_date"] <= on)}


def _in(code: str, area_name: str) -> bool:
    row = AREAS[code]
    return area_name in (row["region"], row["sub-region"], row["intermediate-region"])


def _iso(iri: str) -> str:
    return iri.rsplit("/", 1)[1]


def test_table_covers_every_iso_entry_and_only_antarctica_and_taiwan_lack_a_region():
    assert set(AREAS) == ISO
    assert {c for c, r in AREAS.items() if not r["region"]} == {"ATA", "TWN"}


def test_every_country_has_its_most_specific_area(store):
    rows = select(store, "SELECT ?c ?a WHERE { ?c a cmc:Country ; cmc:inM49Area ?a }").rows
    expected = {c: r["intermediate-region-code"] or r["sub-region-code"] for c, r in AREAS.items() if r["region"]}
    assert {_iso(r["c"]): r["a"] for r in rows} == {c: str(M49[a]) for c, a in expected.items()}
    assert len(rows) == 247


def test_path_reaches_the_region_of_every_country(store):
    rows = select(store, """SELECT ?c ?code ?name WHERE { ?c cmc:inM49Area/skos:broader* ?r .
        ?r a cmc:M49Region ; skos:notation ?code ; rdfs:label ?name }""").rows
    assert {_iso(r["c"]): (r["code"], r["name"]) for r in rows} == {
        c: (r["region-code"], r["region"]) for c, r in AREAS.items() if r["region"]}


def test_areas_form_the_hierarchy_of_the_table(store):
    rows = select(store, """SELECT ?code ?name ?kind ?broader WHERE { ?a a ?kind ; skos:inScheme cmc:M49Areas ;
        skos:notation ?code ; skos:prefLabel ?name . FILTER (?kind IN (cmc:M49Region, cmc:M49SubRegion,
        cmc:M49IntermediateRegion)) OPTIONAL { ?a skos:broader/skos:notation ?broader } }""").rows
    expected = set()
    for r in AREAS.values():
        if r["region"]:
            expected.add((r["region-code"], r["region"], "M49Region", None))
            expected.add((r["sub-region-code"], r["sub-region"], "M49SubRegion", r["region-code"]))
        if r["intermediate-region"]:
            expected.add((r["intermediate-region-code"], r["intermediate-region"], "M49IntermediateRegion",
                          r["sub-region-code"]))
    assert {(r["code"], r["name"], r["kind"].rsplit("#", 1)[1], r.get("broader")) for r in rows} == expected
    assert len({e[0] for e in expected if e[2] == "M49Region"}) == 5


def test_every_treaty_participant_has_a_region():
    for table in (CCM, MBT, _table("ccw_participants_untc.csv")):
        assert {r["iso3"] for r in table if not AREAS[r["iso3"]]["region"]} == set()


def test_region_facts_come_from_the_registered_m49_source(store):
    rows = select(store, """SELECT DISTINCT ?key ?asOf ?commit WHERE { GRAPH ?g { ?c cmc:inM49Area ?a }
        ?g prov:wasDerivedFrom ?s . ?s cmc:sourceKey ?key ; cmc:asOf ?asOf ; cmc:commit ?commit }""").rows
    assert rows == [{"key": "UNSD-M49-2024-06-19", "asOf": "2024-06-19",
                     "commit": "145f1ad3caff212ed25f42b0ee2c8b92a75af895"}]


def test_q25_ccm_parties_in_africa(store):
    rows = select(store, QUERIES["25-ccm-parties-in-a-region"].text).rows
    expected = {c for c in _parties(CCM) if _in(c, "Africa")}
    assert {_iso(r["state"]) for r in rows} == expected and len(rows) == len(expected) == 36
    assert {(_iso(r["state"]), r["subRegion"], r.get("intermediateRegion", "")) for r in rows} == {
        (c, AREAS[c]["sub-region"], AREAS[c]["intermediate-region"]) for c in expected}


def test_q25_with_another_area(store):
    text = QUERIES["25-ccm-parties-in-a-region"].text.replace('"Africa"@en', '"Western Europe"@en')
    assert {_iso(r["state"]) for r in select(store, text).rows} == {
        c for c in _parties(CCM) if _in(c, "Western Europe")}


def test_q26_ccm_signatories_in_south_eastern_asia_not_ratified(store):
    rows = select(store, QUERIES["26-signed-not-ratified-in-a-sub-region"].text).rows
    expected = {r["iso3"]: r["signature_date"] for r in CCM
                if r["signature_date"] and not r["consent_date"] and _in(r["iso3"], "South-eastern Asia")}
    assert {_iso(r["state"]): r["signed"] for r in rows} == expected
    assert expected == {"IDN": "2008-12-03"}


def test_q27_mbt_parties_per_region(store):
    rows = select(store, QUERIES["27-parties-per-region"].text).rows
    parties = Counter(AREAS[c]["region"] for c in _parties(MBT))
    entries = Counter(r["region"] for r in AREAS.values() if r["region"])
    assert {r["regionName"]: (int(r["isoEntries"]), int(r["parties"])) for r in rows} == {
        region: (entries[region], parties[region]) for region in entries}
    assert sum(int(r["parties"]) for r in rows) == len(_parties(MBT)) == 162
