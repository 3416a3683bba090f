"""The explore pages of the field's data: members by country (/explore/members), the cluster-munition records
report by report (/explore/monitor) and parties per UN M49 region on the treaty pages. Each page is fetched from
a live `cmc-kg serve` and its numbers are recomputed here from the graph (the session's build) or from the
reference tables, not taken from the page's own query."""

from __future__ import annotations

import csv
import html
import re
import urllib.request
from collections import Counter, defaultdict

from cmc_kg.query import select
from cmc_kg.settings import Paths

SETTINGS = Paths()
AS_AT = "2026-02-03"


def _get(server, path: str) -> str:
    with urllib.request.urlopen(server.url + path, timeout=60) as answer:
        assert answer.status == 200
        return answer.read().decode("utf-8")


def _counts(page: str, attribute: str) -> dict[str, int]:
    """``<tr data-ATTRIBUTE="name">…<td … data-count="parties">N`` rows as {name: first data-count number}."""
    rows = {}
    for match in re.finditer(rf'<tr data-{attribute}="([^"]+)">(.*?)</tr>', page, re.S):
        numbers = re.findall(r'<td class="number"[^>]*>(\d+)</td>', match.group(2))
        rows[html.unescape(match.group(1))] = int(numbers[0]) if numbers else 0
    return rows


def test_members_page_counts_every_member_organization_by_country(server, store):
    page = _get(server, "/explore/members")
    members = select(store, """SELECT DISTINCT ?org ?countryName WHERE {
        ?m a org:Membership ; org:member ?org . FILTER NOT EXISTS { ?org a foaf:Person }
        OPTIONAL { ?org cmc:country/rdfs:label ?countryName } }""").rows
    per_country = Counter(r["countryName"] for r in members if r.get("countryName"))
    assert int(re.search(r'data-count="organizations">(\d+)<', page).group(1)) == len({r["org"] for r in members})
    assert int(re.search(r'data-count="countries">(\d+)<', page).group(1)) == len(per_country)
    table = _counts(page.split('id="members-table"')[1].split("</table>")[0], "country")
    assert table == dict(per_country)
    # CMC U.S. (noclusterbombs.org): Amnesty International USA is based in the United States
    us_row = re.search(r'<tr data-country="United States">(.*?)</tr>', page, re.S).group(1)
    assert "Amnesty International USA" in us_row
    # the bars say the same as the table
    bars = {html.unescape(c): int(n)
            for c, n in re.findall(r'<g class="bar" data-country="([^"]+)" data-count="(\d+)"', page)}
    assert bars == dict(per_country)
    assert 'data-query="members-by-country"' in page


def test_monitor_page_shows_each_reports_states(server, store):
    page = _get(server, "/explore/monitor")
    records = select(store, """SELECT ?state ?key ?kind WHERE { ?r a cmc:ClusterMunitionStatus ; cmc:state ?state ;
        cmc:status ?kind ; prov:wasDerivedFrom/cmc:sourceKey ?key }""").rows
    per_report = defaultdict(set)
    for r in records:
        per_report[r["key"]].add(r["state"])
    shown = {k: int(n) for k, n in re.findall(r'<td class="number" data-count="([^"]+)">(\d+)</td>', page)}
    assert shown == {key: len(states) for key, states in per_report.items()}
    # Monitor 2011's table of 28 contaminated states; the CMC's 93 stockpilers
    assert shown["MONITOR-CMM-2011-CONTAMINATION"] == 28 and shown["CMC-STOCKPILERS"] == 93
    assert int(re.search(r'data-count="states">(\d+)<', page).group(1)) == len({r["state"] for r in records})
    # dated reports in date order, the undated CMC pages last
    columns = re.findall(r'<th scope="col" data-source="([^"]+)">', page)
    assert columns.index("MONITOR-CMM-2011-CONTAMINATION") < columns.index("MONITOR-CMM-2017-CONTAMINATION")
    assert all(c.startswith("CMC-") for c in columns[-3:])
    assert 'data-query="cluster-munition-status-by-report"' in page


def test_monitor_page_for_one_status(server, store):
    page = _get(server, "/explore/monitor?status=Contaminated")
    columns = re.findall(r'<th scope="col" data-source="([^"]+)">', page)
    # the Monitor's reports by date, then the CMC's two undated copies of its affected-countries page
    assert columns == [f"MONITOR-CMM-{year}-CONTAMINATION" for year in (2011, 2013, 2014, 2017, 2018)] + [
        "CMC-AFFECTED-A", "CMC-AFFECTED-B"]
    # whole lists (2011's table, 2017's list, the CMC page) and partial ones (2013, 2014: the copies end before the
    # end-notes; 2018: the list is an image)
    held = dict(re.findall(r'<td data-list="([^"]+)">([^<]*)</td>', page))
    assert held == {"MONITOR-CMM-2011-CONTAMINATION": "whole", "MONITOR-CMM-2013-CONTAMINATION": "partial",
                    "MONITOR-CMM-2014-CONTAMINATION": "partial", "MONITOR-CMM-2017-CONTAMINATION": "whole",
                    "MONITOR-CMM-2018-CONTAMINATION": "partial", "CMC-AFFECTED-A": "whole", "CMC-AFFECTED-B": "whole"}
    # Lao PDR is contaminated in the six reports that name it, four Monitor reports and both CMC copies (2018 names
    # only Syria and Yemen: an empty cell)
    lao = re.search(r'<tr data-state="Lao People&#39;s Democratic Republic">(.*?)</tr>', page, re.S).group(1)
    assert lao.count(">contaminated</span>") == 6
    assert '<td data-source="MONITOR-CMM-2018-CONTAMINATION"></td>' in lao
    # a status no record has is refused with a message, and every record is shown
    bad = _get(server, "/explore/monitor?status=Nonsense")
    assert 'role="alert"' in bad and "Nonsense" in bad
    assert len(re.findall(r'<th scope="col" data-source=', bad)) > len(columns)


def test_treaty_page_counts_parties_per_region(server, store):
    page = _get(server, "/explore/treaty/ccm")
    regions = {r["state"].rsplit("/", 1)[1]: r["regionName"] for r in select(store, """SELECT ?state ?regionName WHERE {
        ?state a cmc:Country ; cmc:inM49Area/skos:broader* ?r . ?r a cmc:M49Region ; rdfs:label ?regionName }""").rows}
    with open(SETTINGS.reference_dir / "ccm_participants_untc.csv", encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    parties = Counter(regions.get(r["iso3"], "no M49 region") for r in table
                      if r["consent_date"] and r["consent_date"] <= AS_AT
                      and not (r.get("withdrawal_effective_date") and r["withdrawal_effective_date"] <= AS_AT))
    shown = _counts(page.split('id="region-table"')[1].split("</table>")[0], "region")
    assert {k: v for k, v in shown.items() if v} == dict(parties)
    assert sum(shown.values()) == int(re.search(r'data-count="parties">(\d+)<', page).group(1))
    assert 'data-query="regions-of-states"' in page
