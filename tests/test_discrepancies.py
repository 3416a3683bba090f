"""Recorded discrepancies (graph/untc-counts/): each recomputed from the UNTC participant table."""

from __future__ import annotations

import csv

from cmc_kg.namespaces import PREFIXES
from cmc_kg.query import select
from cmc_kg.settings import Paths

SETTINGS = Paths()
with open(SETTINGS.reference_dir / "ccm_participants_untc.csv", encoding="utf-8", newline="") as _f:
    CCM = list(csv.DictReader(_f))
SEGMENT = {"ratification": "ratification", "acceptance": "acceptance", "approval": "approval",
           "accession": "accession", "succession": "succession", "consent_to_be_bound": "consent"}
ACTION = str(PREFIXES["action"])
CLAIM = str(PREFIXES["claim"])


def _records(measure: str, on: str) -> set[str]:
    """The actions the derivation rule counts for a measure on a day (one per state)."""
    out = set()
    for r in CCM:
        if r["withdrawal_effective_date"] and r["withdrawal_effective_date"] <= on:
            continue
        if measure == "NumberOfSignatories":
            if r["signature_date"] and r["signature_date"] <= on:
                out.add(f"{ACTION}ccm/{r['iso3']}/signature")
        elif r["consent_date"] and r["consent_date"] <= on:
            out.add(f"{ACTION}ccm/{r['iso3']}/{SEGMENT[r['consent_type']]}")
    return out


def test_the_2012_ratifications_discrepancy_is_data(store):
    rows = select(store, f"""SELECT ?d ?value ?computed ?on ?rule ?key WHERE {{
        ?d a cmc:Discrepancy ; cmc:disputedClaim <{CLAIM}seed-001/ratifications-2012-01-04> ;
           cmc:computedValue ?computed ; cmc:asOf ?on ; cmc:derivationRule ?rule ;
           prov:wasDerivedFrom/cmc:sourceKey ?key .
        <{CLAIM}seed-001/ratifications-2012-01-04> cmc:value ?value . }}""").rows
    assert [(r["value"], r["computed"], r["on"], r["key"]) for r in rows] == [
        ("77", "67", "2012-01-04", "UNTC-COUNTS")]
    assert len(_records("NumberOfRatifications", "2012-01-04")) == 67


def test_every_discrepancy_recomputes_from_the_table(store):
    found = select(store, """SELECT ?d ?claim ?measure ?computed ?on WHERE { ?d a cmc:Discrepancy ;
        cmc:disputedClaim ?claim ; cmc:computedValue ?computed ; cmc:asOf ?on . ?claim cmc:measure ?measure ;
        cmc:claimSubject treaty:ccm ; cmc:asOf ?on . }""").rows
    assert len(found) == len(select(store, "SELECT ?d WHERE { ?d a cmc:Discrepancy }").rows) >= 1
    for row in found:
        measure = row["measure"].rsplit("#", 1)[1]
        expected = _records(measure, row["on"])
        counted = {r["a"] for r in select(store, f"SELECT ?a WHERE {{ <{row['d']}> cmc:computedFrom ?a }}").rows}
        assert counted == expected, row["d"]
        assert int(row["computed"]) == len(expected), row["d"]


def test_every_dated_ccm_claim_the_records_contradict_has_one_discrepancy(store):
    claims = select(store, """SELECT ?claim ?measure ?value ?on (COUNT(?d) AS ?n) WHERE {
        ?claim a cmc:QuantitativeClaim ; cmc:claimSubject treaty:ccm ; cmc:measure ?measure ; cmc:value ?value ;
               cmc:asOf ?on . FILTER (datatype(?on) = xsd:date)
        VALUES ?measure { cmc:NumberOfSignatories cmc:NumberOfRatifications cmc:NumberOfParties }
        OPTIONAL { ?d cmc:disputedClaim ?claim } } GROUP BY ?claim ?measure ?value ?on""").rows
    assert len(claims) >= 6
    for row in claims:
        computed = len(_records(row["measure"].rsplit("#", 1)[1], row["on"]))
        assert int(row["n"]) == (1 if computed != int(row["value"]) else 0), row
