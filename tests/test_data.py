"""The graph's facts against what its sources say: the figures the issue names, computed from the built graph."""

from __future__ import annotations

from cmc_kg.namespaces import PREFIXES
from cmc_kg.query import select

AS_AT = '"2026-02-03"^^xsd:date'
PARTY_ON = """?c a cmc:ConsentToBeBound ; cmc:treaty treaty:ccm ; cmc:actor ?state ; cmc:date ?d . FILTER (?d <= {on})
  FILTER NOT EXISTS {{ ?w a cmc:WithdrawalEffective ; cmc:treaty treaty:ccm ; cmc:actor ?state ; cmc:date ?l .
                      FILTER (?l <= {on}) }}"""


def _count(store, where: str) -> int:
    return int(select(store, f"SELECT (COUNT(DISTINCT ?state) AS ?n) WHERE {{ {where} }}").rows[0]["n"])


def test_94_signatures_on_3_and_4_december_2008(store):
    assert _count(store, """GRAPH graph:untc { ?s a cmc:Signature ; cmc:treaty treaty:ccm ; cmc:actor ?state ;
        cmc:date ?d . } FILTER (?d IN ("2008-12-03"^^xsd:date, "2008-12-04"^^xsd:date))""") == 94


def test_thirtieth_instrument_and_entry_into_force(store):
    rows = select(store, """SELECT ?d WHERE { ?c a cmc:ConsentToBeBound ; cmc:treaty treaty:ccm ; cmc:date ?d . }
                            ORDER BY ?d OFFSET 29 LIMIT 1""").rows
    assert rows[0]["d"] == "2010-02-16"
    threshold = select(store, "SELECT ?d WHERE { event:ccm\\/threshold cmc:date ?d ; cmc:ordinal 30 }").rows
    assert [r["d"] for r in threshold] == ["2010-02-16"]
    entry = select(store, "SELECT DISTINCT ?d WHERE { event:ccm\\/entry-into-force cmc:date ?d }").rows
    assert [r["d"] for r in entry] == ["2010-08-01"]


def test_status_as_at_2026_02_03(store):
    assert _count(store, PARTY_ON.format(on=AS_AT)) == 112
    assert _count(store, """?s a cmc:Signature ; cmc:treaty treaty:ccm ; cmc:actor ?state .
        FILTER NOT EXISTS { ?c a cmc:ConsentToBeBound ; cmc:treaty treaty:ccm ; cmc:actor ?state . }""") == 12
    withdrawn = select(store, f"""SELECT ?state ?d WHERE {{ ?w a cmc:WithdrawalEffective ; cmc:treaty treaty:ccm ;
        cmc:actor ?state ; cmc:date ?d . FILTER (?d <= {AS_AT}) }}""").rows
    assert withdrawn == [{"state": f"{PREFIXES['country']}LTU", "d": "2025-03-06"}]


def test_claim_of_2012_beside_the_computed_figures(store):
    on = '"2012-01-04"^^xsd:date'
    claims = select(store, f"""SELECT ?measure ?value WHERE {{ ?c a cmc:QuantitativeClaim ; cmc:claimSubject treaty:ccm ;
        cmc:asOf {on} ; cmc:measure ?measure ; cmc:value ?value ; prov:wasDerivedFrom/cmc:sourceKey "SEED-001" . }}""").rows
    assert {(r["measure"].rsplit("#")[1], r["value"]) for r in claims} == {
        ("NumberOfSignatories", "111"), ("NumberOfRatifications", "77")}
    signed_or_acceded = _count(store, f"""?a cmc:treaty treaty:ccm ; cmc:actor ?state ; cmc:date ?d ; a ?kind .
        VALUES ?kind {{ cmc:Signature cmc:Accession }} FILTER (?d <= {on})""")
    consents = _count(store, f"""?a a cmc:ConsentToBeBound ; cmc:treaty treaty:ccm ; cmc:actor ?state ; cmc:date ?d .
        FILTER (?d <= {on})""")
    assert (signed_or_acceded, consents) == (111, 67)


def test_stockpiling_claims_both_kept_with_their_sources(store):
    rows = select(store, """SELECT ?value ?key WHERE { ?c a cmc:QuantitativeClaim ; cmc:measure cmc:NumberOfStockpilingStates ;
        cmc:value ?value ; cmc:qualifier cmc:MoreThan ; prov:wasDerivedFrom/cmc:sourceKey ?key . }""").rows
    assert {(r["value"], r["key"]) for r in rows} == {("70", "SEED-000"), ("80", "SEED-001")}


def test_every_iso_3166_entry_is_a_country_with_codes(store):
    rows = select(store, """SELECT (COUNT(DISTINCT ?c) AS ?n) WHERE { GRAPH graph:iso-codes {
        ?c a cmc:Country ; rdfs:label ?l ; cmc:isoAlpha2 ?a2 ; cmc:isoAlpha3 ?a3 . } }""").rows
    assert rows[0]["n"] == "249"


def test_every_minted_entity_has_label_type_and_source(store):
    rows = select(store, """SELECT ?e ?missing WHERE {
        { SELECT DISTINCT ?e WHERE { GRAPH ?g { ?e ?p ?o } FILTER (isIRI(?e) && STRSTARTS(STR(?e), STR(id:))) } }
        OPTIONAL { ?e rdfs:label ?label FILTER (lang(?label) = "en") }
        OPTIONAL { ?e a ?type }
        OPTIONAL { GRAPH ?h { ?e ?q ?r } ?h prov:wasDerivedFrom ?source }
        OPTIONAL { ?e a ?isSource FILTER (?isSource = cmc:SourceDocument) }
        BIND (IF(!BOUND(?label), "label", IF(!BOUND(?type), "type", IF(!BOUND(?source) && !BOUND(?isSource), "source", "")))
              AS ?missing)
        FILTER (?missing != "")
    }""", asserted_only=True).rows
    assert rows == []
    count = select(store, "SELECT (COUNT(DISTINCT ?e) AS ?n) WHERE { ?e a ?t FILTER (STRSTARTS(STR(?e), STR(id:))) }").rows
    assert int(count[0]["n"]) > 1500


def test_every_fact_graph_is_derived_from_a_registered_source(store):
    rows = select(store, """SELECT ?g WHERE { GRAPH ?g { ?s ?p ?o }
        FILTER (?g NOT IN (graph:ontology, graph:sources, graph:inferred))
        FILTER NOT EXISTS { ?g prov:wasDerivedFrom ?source . ?source a cmc:SourceDocument ; cmc:sourceKey ?key ;
                                                                 dcterms:title ?t . } } GROUP BY ?g""").rows
    assert rows == []


def test_every_claim_has_a_quote(store):
    """Every cmc:QuantitativeClaim quotes its source (graph/CHECKLIST.md: no claim is without one)."""
    rows = select(store, """SELECT ?c WHERE { ?c a cmc:QuantitativeClaim FILTER NOT EXISTS { ?c cmc:quote ?q } }""").rows
    assert rows == []
    assert int(select(store, "SELECT (COUNT(?c) AS ?n) WHERE { ?c a cmc:QuantitativeClaim }").rows[0]["n"]) >= 27
