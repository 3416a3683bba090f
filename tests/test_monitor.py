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
# The CMC's undated "Global problem" pages (its dated release of Monitor 2024 is not one of them)
CMC_PAGES = ("CMC-STOCKPILERS", "CMC-PRODUCERS", "CMC-USERS", "CMC-AFFECTED-A", "CMC-AFFECTED-B")

# A measure that counts the states of one status, for the test that compares the states listed with the headline.
STATUS_OF_MEASURE = {str(CMC.NumberOfContaminatedStates): str(CMC.Contaminated),
                     str(CMC.NumberOfProducerStates): str(CMC.Producer),
                     str(CMC.NumberOfStockpilingStates): str(CMC.Stockpiled)}


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
        # the Monitor's pages, the CMC's, and HRW's release of a Monitor report
        assert r.get("key", "").startswith(("MONITOR-", "CMC-", "HRW-CMM-")), r["s"]
        # the IRI is status:<source-slug>/<ISO3>/<status>, and the source is the report's own graph
        slug, iso, _ = r["s"][len(ID + "status/"):].split("/")
        assert r["src"] == ID + "source/" + slug and r["state"] == ID + "country/" + iso


def test_status_facts_come_from_at_least_three_reports_of_different_years(store):
    years = {r["asOf"][:4] for r in _statuses(store) if r["key"].startswith("MONITOR-")}
    assert len(years) >= 3, years


def test_cmc_pages_list_every_state_they_count(store):
    """The CMC's stockpilers page: "93 countries possessed stockpiles", in four lists (36 no longer possess any,
    8 States Parties, 3 signatories, 46 non-signatories with stocks); producers page: 16 producers, 18 former;
    users page: 21 armed forces, of which Yugoslavia is not a country of the graph; affected-countries page: "The following
    countries are contaminated by cluster munition remnants", 26 names in copy A, 23 in copy B."""
    counts = Counter((r["key"], r["status"].rsplit("#", 1)[1]) for r in _statuses(store) if r["key"] in CMC_PAGES)
    assert counts == {("CMC-STOCKPILERS", "FormerStockpiler"): 36, ("CMC-STOCKPILERS", "Stockpiler"): 8 + 3 + 46,
                      ("CMC-PRODUCERS", "Producer"): 16, ("CMC-PRODUCERS", "FormerProducer"): 18,
                      ("CMC-USERS", "User"): 20,
                      ("CMC-AFFECTED-A", "Contaminated"): 26, ("CMC-AFFECTED-B", "Contaminated"): 23}
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
    rows = [r for r in _statuses(store) if r["status"] == str(CMC.Contaminated) and r.get("asOf")]
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
    assert not any(r.get("asOf") for r in rows if r["source"] in CMC_PAGES)
    # Monitor 2021: "destroyed their stocks of cluster munitions, most recently Switzerland in March 2019"
    assert {(r["stateName"], r.get("date")) for r in rows if r["status"] == "stockpile destroyed"} == {
        ("Switzerland", "2019-03"), ("France", "2016-06"),      # FAQ 2017: "France completed ... in June 2016"
        # Monitor 2014: "At the end of 2013, the United Kingdom (UK) announced the completion …, while Denmark completed
        # its stockpile destruction in March 2014"
        ("United Kingdom", "2013"), ("Denmark", "2014-03")}
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
    # and 22 "As of July 2014", 36 in Monitor 2020's major findings ("36 States Parties and two signatories have destroyed")
    assert destroyed == [("2014", 22), ("2015", 23), ("2017", 28), ("2019", 35), ("2019", 35), ("2020", 36), ("2021", 36)]
    assert len({r["source"] for r in rows}) >= 9


def _whole_lists(store):
    return select(store, """SELECT ?src ?key ?kind WHERE { ?src cmc:wholeListOf ?kind ; cmc:sourceKey ?key }""").rows


def test_a_whole_list_is_in_the_graph_and_matches_its_headline(store):
    """A source that says it holds a status list whole (cmc:wholeListOf) has records of that status, as many as its own
    headline number where it gives one; a source whose stored copy ends before its list does not say so."""
    counts = Counter((r["src"], r["status"]) for r in _statuses(store))
    whole = {(r["key"], r["kind"].rsplit("#", 1)[1]) for r in _whole_lists(store)}
    for r in _whole_lists(store):
        assert counts[(r["src"], r["kind"])] > 0, r
    headlines = {(r["src"], STATUS_OF_MEASURE[r["measure"]]): int(r["value"]) for r in select(store, """
        SELECT ?src ?measure ?value WHERE { ?c a cmc:QuantitativeClaim ; cmc:claimSubject cmc:ClusterMunition ;
            cmc:measure ?measure ; cmc:value ?value ; cmc:qualifier cmc:Exactly ; prov:wasDerivedFrom ?src }""").rows
        if r["measure"] in STATUS_OF_MEASURE}
    checked = [(r["key"], counts[(r["src"], r["kind"])]) for r in _whole_lists(store) if (r["src"], r["kind"]) in headlines
               and counts[(r["src"], r["kind"])] == headlines[(r["src"], r["kind"])]]
    # Monitor 2011: "A total of 28 states and three other areas"; Monitor 2017: "a total of 26 states and three other
    # areas"; Monitor 2014: "91 countries stockpiled …, as shown in the following table"
    assert set(checked) == {("MONITOR-CMM-2011-CONTAMINATION", 28), ("MONITOR-CMM-2017-CONTAMINATION", 26),
                            ("MONITOR-CMM-2014-STOCKPILES", 91)}
    assert ("MONITOR-CMM-2017-CONTAMINATION", "Contaminated") in whole
    # Monitor 2013, 2014, 2018 and 2019 count 26, 23, 26 and 26 contaminated states; their stored copies end before the
    # list (or show it as an image): partial
    for key in ("MONITOR-CMM-2013-CONTAMINATION", "MONITOR-CMM-2014-CONTAMINATION", "MONITOR-CMM-2018-CONTAMINATION",
                "MONITOR-CMM-2019-CONTAMINATION"):
        assert (key, "Contaminated") not in whole, key


def test_the_two_copies_of_the_cmc_affected_countries_page_differ_as_their_texts_do(store):
    """Copy A lists Angola, Azerbaijan and Tajikistan as contaminated, where copy B says "It is unclear whether there is
    cluster munition contamination in the following countries: Angola, Azerbaijan, Colombia, Georgia, Tajikistan";
    every other name is in both."""
    states = {}
    for r in _statuses(store):
        if r["key"] in ("CMC-AFFECTED-A", "CMC-AFFECTED-B"):
            states.setdefault(r["key"], set()).add(r["state"].rsplit("/", 1)[1])
    assert states["CMC-AFFECTED-A"] - states["CMC-AFFECTED-B"] == {"AGO", "AZE", "TJK"}
    assert states["CMC-AFFECTED-B"] <= states["CMC-AFFECTED-A"]
    # "Democratic Republic of the Congo" (A) and "Democratic Republic of Congo" (B) are one state; the territories are none
    assert "COD" in states["CMC-AFFECTED-B"] and not {"XKX", "ESH"} & states["CMC-AFFECTED-A"]


def test_users_named_by_the_monitor_2015_release_and_the_2023_report(store):
    users = {(r["key"], r["state"].rsplit("/", 1)[1]) for r in _statuses(store) if r["status"] == str(CMC.User)}
    # HRW's release of Monitor 2015 names the forces of five states; the Saudi-led coalition's members are not named
    assert {iso for key, iso in users if key == "HRW-CMM-2015"} == {"THA", "LBY", "SDN", "SYR", "UKR"}
    # Monitor 2023: "Russian forces have used cluster munitions extensively"; "Ukrainian forces have also used"
    assert {iso for key, iso in users if key == "MONITOR-CMM-2023-BAN-POLICY"} == {"RUS", "UKR"}


def test_monitor_2020_counts_the_countries_it_names(store):
    """"Between August 2010 and July 2020, cluster munitions were used in seven non-signatories: Cambodia, Libya, South
    Sudan, Sudan, Syria, Ukraine, and Yemen": the quoted list holds as many names as the claim's value."""
    rows = select(store, """SELECT ?value ?quote WHERE { ?c cmc:measure cmc:NumberOfCountriesWithUse ; cmc:value ?value ;
        cmc:quote ?quote ; prov:wasDerivedFrom/cmc:sourceKey "MONITOR-CMM-2020-MAJOR-FINDINGS" }""").rows
    assert len(rows) == 1
    names = rows[0]["quote"].split(": ", 1)[1].rstrip(".").replace(", and ", ", ").split(", ")
    assert len(names) == int(rows[0]["value"]) == 7


def test_users_of_each_reporting_period_in_the_major_findings(store):
    users = {}
    for r in _statuses(store):
        if r["status"] == str(CMC.User) and r["key"].endswith("-MAJOR-FINDINGS"):
            users.setdefault(r["key"], set()).add(r["state"].rsplit("/", 1)[1])
    # 2019: "by Syrian government forces with support from Russia"; 2021: "by Armenia and Azerbaijan in the conflict
    # over Nagorno-Karabakh"; 2022: "Russia has used …, while Ukrainian forces appear to have used them"
    assert users == {"MONITOR-CMM-2011-MAJOR-FINDINGS": {"THA", "LBY"}, "MONITOR-CMM-2019-MAJOR-FINDINGS": {"SYR"},
                     "MONITOR-CMM-2021-MAJOR-FINDINGS": {"ARM", "AZE"}, "MONITOR-CMM-2022-MAJOR-FINDINGS": {"RUS", "UKR"}}
    # the CMC's release of Monitor 2024: "In August 2023, Bosnia and Herzegovina (BiH) became the ninth State Party to
    # complete clearance"
    rows = _run(store, "37-cluster-munition-status-per-report")
    assert ("Bosnia and Herzegovina", "2023-08") in {(r["stateName"], r.get("date")) for r in rows
                                                     if r["source"] == "CMC-CMM-2024-RELEASE"}


def test_states_parties_the_monitor_counts_on_a_day_match_the_depositary(store):
    """Where a Monitor report counts the States Parties on a day, the depositary's table gives as many instruments of
    consent deposited by that day (none withdrawn by then)."""
    import csv
    with open(SETTINGS.reference_dir / "ccm_participants_untc.csv", encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    rows = select(store, """SELECT ?key ?asOf ?value WHERE { ?c cmc:claimSubject treaty:ccm ; cmc:measure cmc:NumberOfParties ;
        cmc:value ?value ; cmc:asOf ?asOf ; prov:wasDerivedFrom/cmc:sourceKey ?key FILTER (DATATYPE(?asOf) = xsd:date)
        FILTER STRSTARTS(?key, "MONITOR-") }""").rows
    checked = {}
    for r in rows:
        day = r["asOf"]
        parties = sum(1 for t in table if t["consent_date"] and t["consent_date"] <= day
                      and not (t["withdrawal_effective_date"] and t["withdrawal_effective_date"] <= day))
        assert int(r["value"]) == parties, r
        checked[r["key"]] = parties
    # Monitor 2018 (1 August 2018), 2019 (31 July 2019), 2020 (23 September 2020), 2022 (1 August 2022), 2023 (2 September 2023)
    assert {"MONITOR-CMM-2019-MAJOR-FINDINGS": 106, "MONITOR-CMM-2020-MAJOR-FINDINGS": 110,
            "MONITOR-CMM-2022-MAJOR-FINDINGS": 110, "MONITOR-CMM-2023-BAN-POLICY": 112}.items() <= checked.items()


def test_monitor_2014_stockpile_table_columns_match_the_depositary(store):
    """The 2014 table "Countries that have stockpiled cluster munitions" puts each of its 91 countries in a column: 33
    States Parties, 9 signatories, 49 non-signatories. The depositary's table agrees for the report's date (August 2014,
    "© August 2014"): a party had deposited its instrument of consent by then, a signatory had signed only, a
    non-signatory had done neither."""
    import csv
    with open(SETTINGS.reference_dir / "ccm_participants_untc.csv", encoding="utf-8", newline="") as f:
        untc = {r["iso3"]: r for r in csv.DictReader(f)}
    day = "2014-08-01"

    def column(iso):
        r = untc.get(iso)
        if r and r["consent_date"] and r["consent_date"] <= day:
            return "States Parties"
        return "Signatories" if r and r["signature_date"] and r["signature_date"] <= day else "Non-Signatories"
    rows = [r for r in _statuses(store) if r["key"] == "MONITOR-CMM-2014-STOCKPILES"]
    columns = Counter()
    for r in rows:
        named = r["quote"].split(": ")[1]
        columns[named] += 1
        assert named == column(r["state"].rsplit("/", 1)[1]), r["s"]
    assert columns == {"States Parties": 33, "Signatories": 9, "Non-Signatories": 49}
    assert {r["status"] for r in rows} == {str(CMC.Stockpiled)}


def test_q42_states_that_entered_or_left_a_whole_list(store):
    """Monitor 2011's table (28) and 2017's list (26) are whole: 8 states left the list and 6 entered it (28 - 8 + 6 = 26).
    Five of those that left are among those Monitor 2019 says "completed clearance" (Albania, the Republic of the
    Congo, Grenada, Guinea-Bissau, Mauritania, Mozambique, Norway, Zambia; Uganda; Thailand)."""
    rows = _run(store, "42-whole-list-changes")
    left = {r["state"].rsplit("/", 1)[1] for r in rows if r["inEarlier"] == "true" and r["inLater"] == "false"}
    entered = {r["state"].rsplit("/", 1)[1] for r in rows if r["inEarlier"] == "false" and r["inLater"] == "true"}
    assert len(rows) == len(left) + len(entered)
    assert (len(left), len(entered)) == (8, 6) and 28 - len(left) + len(entered) == 26
    cleared = {r["state"].rsplit("/", 1)[1] for r in _statuses(store)
               if r["key"] == "MONITOR-CMM-2019-CONTAMINATION" and r["status"] == str(CMC.ClearanceCompleted)}
    assert left & cleared == {"COG", "GNB", "MRT", "NOR", "THA"}
    assert entered == {"CHL", "IRN", "SOM", "UKR", "GBR", "YEM"}
