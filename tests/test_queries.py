"""Every example query in queries/, checked against the reference tables and the seeds it answers from."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pyoxigraph as ox
import pytest
from rdflib.plugins.sparql import prepareQuery

from cmc_kg.namespaces import CMC, PREFIXES
from cmc_kg.query import Rows, asserted_view, example_queries, iri_ref, select
from cmc_kg.safety import declares_dataset
from cmc_kg.settings import Paths

SETTINGS = Paths()
AS_AT = "2026-02-03"
QUERIES = {q.path.stem: q for q in example_queries(SETTINGS)}


FEDERATED = sorted((SETTINGS.queries_dir / "federated").glob("*.rq"))


@pytest.mark.parametrize("path", [q.path for q in QUERIES.values()] + FEDERATED, ids=lambda p: p.stem)
def test_every_query_declares_its_prefixes(path):
    """Clients without the server's predefined prefixes (comunica, YASGUI, another store) parse each query."""
    text = path.read_text(encoding="utf-8")
    prepareQuery(text)  # rdflib, with no initNs: an undeclared prefix raises
    if "SERVICE" not in text:  # Oxigraph would call the service; it parses (and runs) the others without prefixes
        ox.Store().query(text)


def _table(name: str) -> list[dict[str, str]]:
    with open(SETTINGS.reference_dir / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


CCM = _table("ccm_participants_untc.csv")
MBT = _table("mbt_participants_untc.csv")
CCW = _table("ccw_participants_untc.csv")
COUNTRY_NAMES = {r["iso_alpha3"]: r["iso_codes_4_15_name"] for r in _table("countries_iso_wikidata_owid.csv")
                 if r["row_kind"] == "iso3166_1"}


def _parties(table, on: str) -> set[str]:
    return {r["iso3"] for r in table if r["consent_date"] and r["consent_date"] <= on
            and not (r.get("withdrawal_effective_date") and r["withdrawal_effective_date"] <= on)}


def _run(store, stem: str):
    return select(store, QUERIES[stem].text)


def _iso(iri: str) -> str:
    return iri.rsplit("/", 1)[1]


def test_every_query_has_title_description_and_a_test():
    assert len(QUERIES) >= 15
    # The region queries (25-27) are tested in tests/test_regions.py, beside the M49 table.
    regions = (Path(__file__).parent / "test_regions.py").read_text(encoding="utf-8")
    # The diplomatic-process queries (28-31) are tested in tests/test_process.py.
    regions += (Path(__file__).parent / "test_process.py").read_text(encoding="utf-8")
    # The Monitor cluster-munition record queries (37-40) are tested in tests/test_monitor.py.
    regions += (Path(__file__).parent / "test_monitor.py").read_text(encoding="utf-8")
    names = set(globals()) | set(re.findall(r"^def (test_q\w+)", regions, re.M))
    tested = {name[len("test_q"):].replace("_", "-") for name in names if name.startswith("test_q")}
    for stem, query in QUERIES.items():
        assert query.title and query.description, stem
        assert stem[:2] in {t[:2] for t in tested}, f"{stem} has no test"


def test_q01_signed_not_ratified(store):
    rows = _run(store, "01-signed-not-ratified").rows
    expected = {r["iso3"]: r["signature_date"] for r in CCM if r["signature_date"] and not r["consent_date"]}
    assert {_iso(r["state"]): r["signed"] for r in rows} == expected
    assert len(expected) == 12


@pytest.mark.parametrize("on", ["2010-08-01", "2015-03-16", "2025-03-05", "2025-03-06", AS_AT])
def test_q02_parties_on_a_date(store, on):
    text = QUERIES["02-parties-on-a-date"].text.replace(f'"{AS_AT}"^^xsd:date', f'"{on}"^^xsd:date')
    rows = select(store, text).rows
    assert {_iso(r["state"]) for r in rows} == _parties(CCM, on)
    if on == AS_AT:
        assert len(rows) == 112 and "LTU" not in {_iso(r["state"]) for r in rows}


def test_q03_steering_committee_from_seed_002(store):
    rows = _run(store, "03-cmc-steering-committee").rows
    names = {r["name"] for r in rows}
    seed = (SETTINGS.reference_dir / "seeds" / "002_926435b054bf0d88.txt").read_text(encoding="utf-8")
    for name in ("Mines Action Canada", "Human Rights Watch", "Norwegian People's Aid", "DanChurchAid",
                 "Lebanon Landmine Resource Centre"):
        assert name in seed and name in names
    countries = {(r["name"], r.get("countryName")) for r in rows}
    assert ("DanChurchAid", "Denmark") in countries
    # "Pax Christi (Ireland & Netherlands)" is two national sections; "IPPNW (Russia)" the Russian affiliate
    assert ("Pax Christi (Ireland)", "Ireland") in countries and ("Pax Christi (Netherlands)", "Netherlands") in countries
    assert ("International Physicians for the Prevention of Nuclear War (Russia)", "Russian Federation") in countries
    assert "International Physicians for the Prevention of Nuclear War" not in names
    assert {r["source"] for r in rows} == {"SEED-002", "ICBUW-2006", "SG-UU-MIRIAM-STRUYK"}
    assert {r["name"] for r in rows if r["source"] == "SG-UU-MIRIAM-STRUYK"} == {"IKV Pax Christi"}
    assert {r["name"] for r in rows if r["source"] == "ICBUW-2006"} >= {"Amnesty International UK", "Handicap International"}


def test_q04_timeline_of_lithuania(store):
    rows = _run(store, "04-timeline-of-a-state").rows
    dates = [r["date"] for r in rows]
    assert dates == sorted(dates)
    ccm = next(r for r in CCM if r["iso3"] == "LTU")
    mbt = next(r for r in MBT if r["iso3"] == "LTU")
    for value in (ccm["signature_date"], ccm["consent_date"], ccm["withdrawal_notification_date"],
                  ccm["withdrawal_effective_date"], mbt["consent_date"], mbt["withdrawal_effective_date"]):
        assert value in dates
    assert rows[-1]["date"] == max(ccm["withdrawal_effective_date"], mbt["withdrawal_effective_date"])


def test_q05_ccm_parties_not_mbt_parties(store):
    rows = _run(store, "05-parties-to-one-treaty-not-another").rows
    expected = _parties(CCM, AS_AT) - _parties(MBT, AS_AT)
    assert {_iso(r["state"]) for r in rows} == expected
    assert {"CUB", "LAO", "LBN"} <= expected


def test_q06_sources_of_entry_into_force(store):
    rows = _run(store, "06-sources-of-a-fact").rows
    assert {r["value"] for r in rows} == {"2010-08-01"}
    keys = {r["sourceKey"] for r in rows}
    assert {"UNTC", "SEED-001"} <= keys


def _signatories(table, on: str) -> set[str]:
    """States that had signed by that day (accessions are not signatures), less those whose withdrawal had taken effect."""
    return {r["iso3"] for r in table if r["signature_date"] and r["signature_date"] <= on
            and not (r.get("withdrawal_effective_date") and r["withdrawal_effective_date"] <= on)}


def test_q07_claims_against_records_2012(store):
    rows = [r for r in _run(store, "07-claims-against-treaty-records").rows if r["asOf"] == "2012-01-04"]
    by_measure = {r["measureLabel"]: r for r in rows}
    on = "2012-01-04"
    assert (len(_signatories(CCM, on)), len(_parties(CCM, on))) == (108, 67)
    assert by_measure["number of signatories"]["claimed"] == "111"
    assert by_measure["number of signatories"]["computed"] == str(len(_signatories(CCM, on)))
    assert by_measure["number of ratifications"]["claimed"] == "77"
    assert by_measure["number of ratifications"]["computed"] == str(len(_parties(CCM, on)))
    assert {r["sourceKey"] for r in rows} == {"SEED-001"}
    assert all(r.get("discrepancy") for r in rows)


def test_q07_counts_accessions_and_withdrawals_as_the_depositary_does(store):
    """Signatures only, and no state whose withdrawal took effect (Lithuania, 2025-03-06): the depositary's own totals."""
    rows = {r["measureLabel"]: r for r in _run(store, "07-claims-against-treaty-records").rows if r["asOf"] == AS_AT}
    signatories, parties = _signatories(CCM, AS_AT), _parties(CCM, AS_AT)
    assert (len(signatories), len(parties)) == (107, 112)   # UNTC: "Signatories : 107. Parties : 112"
    assert "LTU" not in signatories | parties
    assert rows["number of signatories"]["computed"] == rows["number of signatories"]["claimed"] == str(len(signatories))
    assert rows["number of states parties"]["computed"] == rows["number of states parties"]["claimed"] == str(len(parties))
    assert not any(r.get("discrepancy") for r in rows.values())
    for row in _run(store, "07-claims-against-treaty-records").rows:
        on = row["asOf"]
        expected = _signatories(CCM, on) if row["measureLabel"] == "number of signatories" else _parties(CCM, on)
        assert row["computed"] == str(len(expected)), row
        assert bool(row.get("discrepancy")) == (row["computed"] != row["claimed"]), row


def test_q08_claims_of_different_dates_are_not_conflicts(store):
    """SEED-000 speaks for a time before 2008-05-30, SEED-001 for 2012-01-04 or later: "more than 70" and
    "more than 80" stockpiling states are two dates, not a conflict. Claims whose times can overlap still are."""
    rows = _run(store, "08-conflicting-claims").rows
    stockpiling = {(r["value"], r["sourceKey"]) for r in rows if r["measureLabel"] == "number of stockpiling states"}
    # SEED-000's "more than 70" is no longer set against SEED-001's "more than 80"; Monitor figures of 2017 and
    # 2019 (91, 93) and the CMC's undated page (93, of a time after 3 December 2008) can overlap SEED-001's
    # open-ended time and are listed with it.
    assert not any(source == "SEED-000" for _, source in stockpiling)
    assert all(source.startswith(("SEED-001", "MONITOR", "CMC-")) for _, source in stockpiling)
    bounds = {r["key"]: (r.get("lo"), r.get("hi")) for r in select(store, """SELECT ?key ?lo ?hi WHERE {
        ?s cmc:sourceKey ?key FILTER (?key IN ("SEED-000", "SEED-001", "SEED-002"))
        OPTIONAL { ?s cmc:asOfNotBefore ?lo } OPTIONAL { ?s cmc:asOfNotAfter ?hi } }""").rows}
    assert bounds == {"SEED-000": ("2003-11", "2008-05-30"), "SEED-001": ("2012-01-04", None),
                      "SEED-002": ("2003-11", "2008-05-30")}
    assert bounds["SEED-000"][1] < bounds["SEED-001"][0]
    members = {(r["value"], r["sourceKey"]) for r in rows if r["measureLabel"] == "number of member organizations"}
    # 2003-11-13 lies within SEED-002's range; the coalition-network sources add more member counts, some
    # undated (NPA-CMC's "more than 300"), which can overlap any other and so are listed too.
    assert members >= {("85", "DEWP-CMC"), ("200", "SEED-002"), ("300", "NPA-CMC")}


def test_q09_signatures_at_oslo(store):
    rows = _run(store, "09-signatures-at-opening").rows
    expected = Counter(r["signature_date"] for r in CCM if r["signature_date"] in ("2008-12-03", "2008-12-04"))
    assert {r["date"]: int(r["signatures"]) for r in rows} == dict(expected)
    assert sum(expected.values()) == 94


def test_q10_thirtieth_instrument(store):
    rows = _run(store, "10-entry-into-force-threshold").rows
    consent_dates = sorted(r["consent_date"] for r in CCM if r["consent_date"])
    assert {r["thirtieth"] for r in rows} == {consent_dates[29]} == {"2010-02-16"}
    assert {_iso(r["state"]) for r in rows} == {r["iso3"] for r in CCM if r["consent_date"] == "2010-02-16"}
    assert {r["entryIntoForce"] for r in rows} == {"2010-08-01"}


def test_q11_withdrawals(store):
    rows = _run(store, "11-withdrawals").rows
    expected = {(r["iso3"], r["withdrawal_notification_date"], r["withdrawal_effective_date"])
                for table in (CCM, MBT, CCW) for r in table if r.get("withdrawal_notification_date")}
    got = {(next(k for k, v in COUNTRY_NAMES.items() if v == r["name"]), r["notified"],
            r.get("effective") or r.get("scheduled")) for r in rows}
    assert got == expected
    assert ("LTU", "2024-09-06", "2025-03-06") in got
    # a withdrawal after the as-at date has not taken effect: only its scheduled date, with the depositary's condition
    pending = [r for r in rows if r.get("scheduled")]
    assert [(r["name"], r.get("effective"), r["scheduled"]) for r in pending] == [("Poland", None, "2026-02-20")]
    assert "subject to the condition set forth in the said paragraph" in pending[0]["condition"]
    assert all(r["effective"] <= AS_AT for r in rows if r.get("effective"))


def test_poland_has_not_withdrawn_from_the_mine_ban_treaty(store):
    """The depositary's note makes Poland's withdrawal conditional ("will take effect ... subject to the condition"):
    no query for withdrawals that took effect lists Poland, on any date."""
    effective = select(store, """SELECT ?state WHERE { ?w a cmc:WithdrawalEffective ; cmc:treaty treaty:mbt ;
                                                          cmc:actor ?state }""").rows
    assert {_iso(r["state"]) for r in effective} == {r["iso3"] for r in MBT if r["status_at_untc_date"] == "withdrawn"}
    assert "POL" not in {_iso(r["state"]) for r in effective}
    note = next(r for r in _table("untc_footnotes_ccm_mbt_ccw.csv") if r["untc_mtdsg"] == "XXVI-5" and r["participants"] == "Poland")
    rows = select(store, """SELECT ?date ?scheduled ?quote WHERE { action:mbt\\/POL\\/withdrawal-notification
        a cmc:WithdrawalNotification ; cmc:date ?date ; cmc:scheduledEffectiveDate ?scheduled ; cmc:quote ?quote }""").rows
    poland = next(r for r in MBT if r["iso3"] == "POL")
    assert rows == [{"date": poland["withdrawal_notification_date"], "scheduled": poland["withdrawal_effective_date"],
                     "quote": note["note_text"]}]
    later = '"2026-12-31"^^xsd:date'
    parties = select(store, f"""SELECT ?state WHERE {{ ?c a cmc:ConsentToBeBound ; cmc:treaty treaty:mbt ; cmc:actor ?state .
        FILTER NOT EXISTS {{ ?w a cmc:WithdrawalEffective ; cmc:treaty treaty:mbt ; cmc:actor ?state ; cmc:date ?l .
                            FILTER (?l <= {later}) }} }}""").rows
    assert "POL" in {_iso(r["state"]) for r in parties}


def test_q12_status_counts(store):
    rows = {_iso(r["treaty"]): r for r in _run(store, "12-treaty-status-counts").rows}
    for slug, table in (("ccm", CCM), ("mbt", MBT), ("ccw", CCW)):
        assert int(rows[slug]["parties"]) == len(_parties(table, AS_AT))
        assert int(rows[slug]["signatoriesNotParties"]) == sum(
            1 for r in table if r["signature_date"] and not r["consent_date"])
    assert (rows["ccm"]["parties"], rows["ccm"]["signatoriesNotParties"], rows["ccm"]["withdrawals"]) == ("112", "12", "1")
    assert rows["mbt"]["parties"] == "162"  # UNTC's count, Poland's withdrawal still pending


def test_q13_cmc_members_from_seeds(store):
    rows = {r["name"]: r for r in _run(store, "13-cmc-members").rows}
    for name in ("Amnesty International", "Handicap International", "Human Rights Watch",
                 "Swedish Peace and Arbitration Society", "Legacies of War", "Mines Action Canada"):
        assert name in rows
    assert "founding member" in rows["Mines Action Canada"]["roles"]
    assert "steering committee member" in rows["Mines Action Canada"]["roles"]
    assert set(rows["Human Rights Watch"]["sources"].split("; ")) >= {"SEED-000", "SEED-001", "SEED-002"}
    # member organizations apart from campaigns and individuals, with or without the inferred triples
    for asserted_only in (False, True):
        kinds = {r["name"]: r["memberKind"] for r in select(store, QUERIES["13-cmc-members"].text, asserted_only).rows}
        assert kinds["Human Rights Watch"] == kinds["Mines Action Canada"] == "member organization"
        assert kinds["International Campaign to Ban Landmines"] == "campaign"
        assert kinds["Branislav Kapetanovic"] == "individual"
        assert set(kinds.values()) == {"member organization", "campaign", "individual"}


def test_q14_icbl_cmc_structure(store):
    rows = _run(store, "14-icbl-cmc-structure").rows
    relations = {(r["relation"], r["partLabel"]) for r in rows}
    assert ("ambassador of", "Jody Williams") in relations
    assert ("ambassador of", "Tun Channareth") in relations
    assert ("ambassador of", "Margaret Arech Orech") in relations
    assert {p for rel, p in relations if rel == "merged into"} >= {"International Campaign to Ban Landmines",
                                                                  "Cluster Munition Coalition"}
    assert sum(1 for rel, _ in relations if rel == "governance body of") >= 2


def test_q15_survivors_from_seed_001(store):
    rows = _run(store, "15-survivors").rows
    people = {r["name"]: r for r in rows}
    assert set(people) == {"Tun Channareth", "Margaret Arech Orech", "Branislav Kapetanovic"}
    assert people["Tun Channareth"]["nationality"] == "Cambodia"
    assert people["Margaret Arech Orech"]["nationality"] == "Uganda"


def test_q16_new_parties_per_year(store):
    rows = _run(store, "16-new-parties-per-year").rows
    names = {"ccm": "Convention on Cluster Munitions"}
    got = {int(r["year"]): int(r["newParties"]) for r in rows if r["treatyName"] == names["ccm"]}
    expected = Counter(int(r["consent_date"][:4]) for r in CCM if r["consent_date"])
    assert got == dict(expected)


def test_q17_entry_into_force_for_states(store):
    rows = {r["name"]: r for r in _run(store, "17-entry-into-force-for-states").rows}
    expected = {COUNTRY_NAMES[r["iso3"]]: r["eif_for_state_derived_art17"] for r in CCM if r["eif_for_state_derived_art17"]}
    assert {n: r["entryIntoForce"] for n, r in rows.items()} == expected
    assert set(rows["Canada"]["sources"].split("; ")) == {"UNTC-ART17", "CMC-CANADA-2015"}
    assert rows["Canada"]["entryIntoForce"] == "2015-09-01"


def test_q18_foundings_and_mergers(store):
    rows = _run(store, "18-foundings-and-mergers").rows
    cmc = {(r["date"], r["sourceKey"]) for r in rows if r["organizationName"] == "Cluster Munition Coalition"
           and r["what"] == "founding"}
    assert ("2003-11", "SEED-000") in cmc and ("2003-11-13", "DEWP-CMC") in cmc
    assert any(r["what"] == "merger" and r["date"] == "2011" for r in rows)
    # One row per event and source, with a place only where that source names one.
    keys = [(r["what"], r["organizationName"], r["date"], r["sourceKey"]) for r in rows]
    assert len(keys) == len(set(keys))
    places = {(r["date"], r["sourceKey"]): r.get("placeName") for r in rows if r["organizationName"] == "Cluster Munition Coalition"}
    assert places[("2003-11-13", "DEWP-CMC")] == "The Hague" and places[("2003-11", "SEED-000")] is None


def test_q19_search_by_label(store):
    rows = _run(store, "19-search-by-label").rows
    assert rows and all("landmine" in r["label"].lower() for r in rows)
    assert "International Campaign to Ban Landmines" in {r["label"] for r in rows}
    # common names: the states' ISO names are formal ("Lao People's Democratic Republic")
    for word, code in (("laos", "LAO"), ("russia", "RUS"), ("syria", "SYR")):
        text = QUERIES["19-search-by-label"].text.replace('"landmine"', f'"{word}"')
        assert str(PREFIXES["country"]) + code in {r["entity"] for r in select(store, text).rows}, word


def test_q20_conflicting_dates(store):
    rows = _run(store, "20-conflicting-dates").rows
    guinea_bissau = {(r["date"], r["sourceKey"]) for r in rows if "GNB" in r["subject"]}
    untc = next(r["signature_date"] for r in CCM if r["iso3"] == "GNB")
    assert guinea_bissau == {(untc, "UNTC"), ("2008-12-03", "MONITOR-2022")}


def _members_by(store, prop: str):
    """Organizations holding a membership, grouped by the value of prop (None: no value), recomputed with plain triples."""
    rows = select(store, f"""SELECT DISTINCT ?m ?v WHERE {{ ?x a org:Membership ; org:member ?m .
        FILTER NOT EXISTS {{ ?m a foaf:Person }} OPTIONAL {{ ?m {prop} ?v }} }}""").rows
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.get("v"), set()).add(r["m"])
    return {k: len(v) for k, v in groups.items()}


def test_q32_members_by_country(store):
    rows = _run(store, "32-members-by-country").rows
    got = {r.get("country"): int(r["organizations"]) for r in rows}
    assert got == _members_by(store, "cmc:country")
    assert got[str(PREFIXES["country"]) + "USA"] >= 4


def test_q41_members_per_region(store):
    rows = _run(store, "41-members-per-region").rows
    regions = {r["state"]: r["regionName"] for r in select(store, """SELECT ?state ?regionName WHERE {
        ?state cmc:inM49Area/skos:broader* ?r . ?r a cmc:M49Region ; rdfs:label ?regionName }""").rows}
    members = select(store, """SELECT DISTINCT ?m ?c WHERE { ?x a org:Membership ; org:member ?m .
        ?m cmc:country ?c FILTER NOT EXISTS { ?m a foaf:Person } }""").rows
    orgs, countries = {}, {}
    for r in members:
        orgs.setdefault(regions[r["c"]], set()).add(r["m"])
        countries.setdefault(regions[r["c"]], set()).add(r["c"])
    assert {r["regionName"]: (int(r["organizations"]), int(r["countries"])) for r in rows} == {
        name: (len(orgs[name]), len(countries[name])) for name in orgs}
    assert {"Europe", "Americas", "Asia"} <= {r["regionName"] for r in rows}


def test_q33_members_by_kind(store):
    rows = _run(store, "33-members-by-kind").rows
    got = {r.get("kind"): int(r["organizations"]) for r in rows}
    assert got == _members_by(store, "org:classification")
    assert got[str(CMC.NGO)] >= 6


def test_q34_national_campaigns(store):
    rows = _run(store, "34-national-campaigns").rows
    us = [r for r in rows if r["name"] == "Cluster Munition Coalition U.S."]
    # the two stored copies of the CMC U.S. page name different coordinators: both are kept
    assert {(r["coordinatorName"], r["source"]) for r in us} == {("Legacies of War", "CMCUS-ABOUT-A"),
                                                                 ("Humanity & Inclusion", "CMCUS-ABOUT-B")}
    assert {r["treaty"] for r in us} == {str(PREFIXES["treaty"]) + "ccm"}
    assert {r["committeeMemberName"] for r in us} >= {"Amnesty International USA", "Arms Control Association",
                                                      "Legacies of War", "Humanity & Inclusion"}
    assert {r["name"] for r in rows} >= {"Thailand Campaign to Ban Landmines",
                                         "Philippines Campaign against Cluster Munitions"}


def test_q35_member_counts_over_time(store):
    rows = _run(store, "35-member-counts-over-time").rows
    cmc = {(r["measure"], r["value"], r.get("asOf"), r["source"]) for r in rows if r["subjectName"] == "Cluster Munition Coalition"}
    assert ("number of member organizations", "85", "2003-11-13", "DEWP-CMC") in cmc
    assert ("number of countries", "42", "2003-11-13", "DEWP-CMC") in cmc
    assert ("number of member organizations", "151", "2005-06-01", "DEWP-CMC") in cmc
    assert ("number of member organizations", "350", "2010-04-26", "COP-CMC-2010") in cmc
    dated = [r["asOf"] for r in rows if r["subjectName"] == "Cluster Munition Coalition" and r.get("asOf")
             and r["measure"] == "number of member organizations"]
    assert dated == sorted(dated)


@pytest.mark.parametrize("on", ["2010-08-01", "2012-01-04", "2025-03-05", "2025-03-06", AS_AT])
def test_q36_ccm_parties_on_a_date_in_one_pattern(store, on):
    text = QUERIES["36-ccm-parties-on-a-date"].text.replace(f'"{AS_AT}"^^xsd:date', f'"{on}"^^xsd:date')
    rows = select(store, text).rows
    assert {_iso(r["state"]) for r in rows} == _parties(CCM, on)
    assert len(rows) == len(_parties(CCM, on))
    if on == AS_AT:
        assert len(rows) == 112   # UNTC: "Parties : 112"


def _normalised(rows: Rows) -> list[tuple]:
    """Rows as sorted tuples, each GROUP_CONCAT list sorted, whose order SPARQL leaves open."""
    return sorted(tuple(sorted((k, "; ".join(sorted(v.split("; ")))) for k, v in row.items())) for row in rows.rows)


def test_readme_names_the_examples_that_need_inference(store):
    """README's dataset section lists the examples --asserted changes; every other answers the same."""
    assert not any(declares_dataset(q.text) for q in QUERIES.values())  # else --asserted leaves their dataset be
    asserted = asserted_view(store)  # what select(..., asserted_only=True) queries, made once, not once a query
    needs = {stem.split("-", 1)[0] for stem, q in QUERIES.items()
             if _normalised(select(store, q.text)) != _normalised(select(asserted, q.text))}
    readme = (SETTINGS.root / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"Examples that rely on them \(([\d,\s]+):", readme)
    assert listed, "README.md no longer lists the examples that rely on inference"
    assert set(re.sub(r"\s", "", listed.group(1)).split(",")) == needs


def test_sparqlwrapper_reads_the_form_of_every_shipped_query():
    """SPARQLWrapper guesses a query's form from its text and sends what it takes for an update as `update=`
    (403 here). Its comment pattern leaves every second line of a comment block, so a description holding
    "clearance" read as CLEAR, and "describe" as DESCRIBE: descriptions must not trip it."""
    from SPARQLWrapper import SPARQLWrapper

    for stem, query in QUERIES.items():
        form = re.search(r"^(SELECT|CONSTRUCT|ASK|DESCRIBE)\b", query.text, re.M)
        client = SPARQLWrapper("http://127.0.0.1/sparql")
        client.setQuery(query.text)
        assert form and client.queryType == form.group(1), (stem, client.queryType)


def test_iri_ref_refuses_what_sparql_cannot_write_between_angle_brackets():
    """Pages put IRIs from the graph into their queries: iri_ref refuses every character SPARQL's IRIREF excludes
    (and Oxigraph's parser refuses too), and writes every other character of the first 12,288 code points."""
    excluded = set('<>"{}|^`\\') | {chr(c) for c in range(0x21)}
    for code in range(0x3000):
        char = chr(code)
        if char in excluded:
            with pytest.raises(ValueError, match="not an IRI SPARQL can write"):
                iri_ref(f"http://example.org/a{char}b")
            with pytest.raises(SyntaxError):
                ox.Store().query(f"ASK {{ <http://example.org/a{char}b> ?p ?o }}")
        else:
            assert iri_ref(f"http://example.org/a{char}b") == f"<http://example.org/a{char}b>"
