"""Cluster-munition records from the Landmine and Cluster Munition Monitor (graph/monitor-cmm-*/, graph/monitor-faq-*/)
and the example queries 37-40. Every hard-coded value names the report's words it comes from (quoted in cmc:quote)."""

from __future__ import annotations

from collections import Counter

from cmc_kg.namespaces import CMC, PREFIXES
from cmc_kg.query import example_queries, select
from cmc_kg.settings import Paths

SETTINGS = Paths()
QUERIES = {q.path.stem: q for q in example_queries(SETTINGS)}
ID = str(PREFIXES["id"])

# A measure that counts the states of one status, for the test that compares the states listed with the headline.
STATUS_OF_MEASURE = {str(CMC.NumberOfContaminatedStates): str(CMC.Contaminated),
                     str(CMC.NumberOfProducerStates): str(CMC.Producer)}


def _run(store, stem):
    return select(store, QUERIES[stem].text).rows


def _statuses(store):
    return select(store, """SELECT ?s ?state ?status ?asOf ?quote ?src ?key ?srcAsOf WHERE { GRAPH ?g {
        ?s a cmc:ClusterMunitionStatus ; cmc:state ?state ; cmc:status ?status ; prov:wasDerivedFrom ?src .
        OPTIONAL { ?s cmc:asOf ?asOf } OPTIONAL { ?s cmc:quote ?quote } }
        OPTIONAL { ?src cmc:sourceKey ?key } OPTIONAL { ?src cmc:asOf ?srcAsOf } }""").rows


def test_every_status_has_a_quote_its_reports_date_and_its_report(store):
    rows = _statuses(store)
    assert len(rows) >= 200
    for r in rows:
        assert r.get("quote"), r["s"]
        # a dated report dates its records (in the report's year); an undated page (the CMC's) dates none
        assert (r.get("asOf") or "")[:4] == (r.get("srcAsOf") or "")[:4], r["s"]
        assert r.get("key", "").startswith(("MONITOR-", "CMC-")), r["s"]
        # the IRI is status:<source-slug>/<ISO3>/<status>, and the source is the report's own graph
        slug, iso, _ = r["s"][len(ID + "status/"):].split("/")
        assert r["src"] == ID + "source/" + slug and r["state"] == ID + "country/" + iso


def test_status_facts_come_from_at_least_three_reports_of_different_years(store):
    years = {r["asOf"][:4] for r in _statuses(store) if r["key"].startswith("MONITOR-")}
    assert len(years) >= 3, years


def test_cmc_pages_list_every_state_they_count(store):
    """The CMC's stockpilers page: "93 countries possessed stockpiles", in four lists (36 no longer possess any,
    8 States Parties, 3 signatories, 46 non-signatories with stocks); producers page: 16 producers, 18 former;
    users page: 21 armed forces, of which Yugoslavia is not a country of the graph."""
    counts = Counter((r["key"], r["status"].rsplit("#", 1)[1]) for r in _statuses(store) if r["key"].startswith("CMC-"))
    assert counts == {("CMC-STOCKPILERS", "FormerStockpiler"): 36, ("CMC-STOCKPILERS", "Stockpiler"): 8 + 3 + 46,
                      ("CMC-PRODUCERS", "Producer"): 16, ("CMC-PRODUCERS", "FormerProducer"): 18,
                      ("CMC-USERS", "User"): 20}
    stockpilers = {r["state"] for r in _statuses(store) if r["key"] == "CMC-STOCKPILERS"}
    assert len(stockpilers) == 93          # no state in two of the page's lists


def test_counts_per_status_per_report_match_the_headline_numbers(store):
    """Where a report lists the states of a status and gives their number, both agree; no report lists more
    states of a status than its own headline number."""
    counts = Counter((r["src"], r["status"]) for r in _statuses(store))
    claims = select(store, """SELECT ?src ?measure ?value ?qualifier WHERE {
        ?c a cmc:QuantitativeClaim ; cmc:claimSubject cmc:ClusterMunition ; cmc:measure ?measure ; cmc:value ?value ;
           cmc:qualifier ?qualifier ; prov:wasDerivedFrom ?src }""").rows
    checked = 0
    for c in claims:
        status = STATUS_OF_MEASURE.get(c["measure"])
        if status and counts[(c["src"], status)]:
            assert counts[(c["src"], status)] <= int(c["value"]), c
            checked += 1
    assert checked >= 1
    # Monitor 2017: "As of 1 August 2017, a total of 26 states and three other areas are contaminated" and the
    # page's list names those 26 states (the three other areas are not states).
    assert counts[(ID + "source/monitor-cmm-2017-contamination", str(CMC.Contaminated))] == 26
    # Monitor 2011: "A total of 28 states and three other areas were believed to have cluster munition remnants", and
    # its table names those 28 states
    assert counts[(ID + "source/monitor-cmm-2011-contamination", str(CMC.Contaminated))] == 28


def test_contamination_records_from_five_report_years(store):
    rows = [r for r in _statuses(store) if r["status"] == str(CMC.Contaminated)]
    years = {r["asOf"][:4] for r in rows}
    assert years == {"2011", "2013", "2014", "2017", "2018"}, years
    by_state = {}
    for r in rows:
        by_state.setdefault(r["state"].rsplit("/", 1)[1], set()).add(r["asOf"][:4])
    # Lao PDR, Lebanon, Iraq, BiH, Cambodia, Vietnam: named in the 2011 table, the 2013 and 2014 summaries, the 2017 list
    for iso in ("LAO", "LBN", "IRQ", "BIH", "KHM", "VNM"):
        assert {"2011", "2013", "2014", "2017"} <= by_state[iso], iso
    # Norway: in the 2011 table and the 2014 summary, not in the 2017 list (cleared since)
    assert by_state["NOR"] == {"2011", "2014"}


def test_q37_status_per_report(store):
    rows = _run(store, "37-cluster-munition-status-per-report")
    per = Counter((r["source"], r["status"]) for r in rows)
    assert per[("MONITOR-CMM-2017-CONTAMINATION", "contaminated")] == 26
    # the undated CMC pages are listed too, without a date ("States that used to have stockpiles but no longer possess
    # any")
    assert per[("CMC-STOCKPILERS", "former stockpiler")] == 36
    assert not any(r.get("asOf") for r in rows if r["source"].startswith("CMC-"))
    # Monitor 2021: "destroyed their stocks of cluster munitions, most recently Switzerland in March 2019"
    assert {(r["stateName"], r.get("date")) for r in rows if r["status"] == "stockpile destroyed"} == {
        ("Switzerland", "2019-03"), ("France", "2016-06")}      # FAQ 2017: "France completed ... in June 2016"
    # Monitor 2022: Russia "since 24 February 2022"
    assert ("Russian Federation", "since 24 February 2022") in {(r["stateName"], r.get("period")) for r in rows if r["status"] == "user"}


def test_q38_status_changes_between_two_reports(store):
    rows = _run(store, "38-cluster-munition-status-changes")
    # Monitor 2017 lists Ukraine as contaminated; Monitor 2022 records use by the government of Ukraine in 2022
    assert {(r["stateName"], r["statusA"], r["statusB"]) for r in rows} == {("Ukraine", "contaminated", "user")}


def test_q39_producers_that_are_ccm_parties(store):
    rows = _run(store, "39-producers-that-are-ccm-parties")
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], set()).add(r["state"].rsplit("/", 1)[1])
    # Monitor 2011: former producers BiH, Chile, the Netherlands; Monitor 2015: Slovakia, all parties by UNTC
    monitor = by_source["MONITOR-CMM-2011-MAJOR-FINDINGS"] | by_source["MONITOR-CMM-2015-BAN-POLICY"]
    assert monitor == {"BIH", "CHL", "NLD", "SVK"}
    # the CMC's 18 former producers less Argentina ("has not joined the Convention on Cluster Munitions"); none of its
    # 16 producers is a party
    assert len(by_source["CMC-PRODUCERS"]) == 17 and "ARG" not in by_source["CMC-PRODUCERS"]
    assert {r["status"] for r in rows if r["source"] == "CMC-PRODUCERS"} == {"former producer"}


def test_q40_headline_counts_by_report(store):
    rows = _run(store, "40-monitor-headline-counts")
    values = {(r["source"], r["measure"], r["value"]) for r in rows}
    assert ("MONITOR-CMM-2022-BAN-POLICY", "number of states with stocks outside the treaty", "47") in values
    assert ("MONITOR-CMM-2017-CONTAMINATION", "number of contaminated states", "26") in values
    # states parties that destroyed stocks grow over the reports: 23 (2015), 28 (FAQ 2017), 35 (2019), 36 (2021)
    destroyed = sorted((r["asOf"][:4], int(r["value"])) for r in rows if r["measure"] == "number of states that destroyed their stocks"
                       and r["subjectName"] == "Convention on Cluster Munitions")
    assert destroyed == [("2015", 23), ("2017", 28), ("2019", 35), ("2019", 35), ("2021", 36)]
    assert len({r["source"] for r in rows}) >= 9
