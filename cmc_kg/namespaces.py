"""Namespaces of cmc-kg. GENERATED from ontology/cmc.ttl by `python -m cmc_kg.namegen`: do not edit."""

from rdflib import Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, ORG, OWL, PROV, RDF, RDFS, SDO, SKOS, TIME, VANN, XSD, DefinedNamespace

__all__ = ["CMC", "ONTOLOGY", "ONTOLOGY_VERSION", "ID", "GRAPH", "PREFIXES", "bind_prefixes",
           "ONTOLOGY_GRAPH", "SOURCES_GRAPH", "INFERRED_GRAPH", "PUSH_GRAPH", "MERGED_GRAPH",
           "DCTERMS", "FOAF", "ORG", "OWL", "PROV", "RDF", "RDFS", "SDO", "SKOS", "TIME", "VANN", "XSD",
           "P", "PQ", "PS", "SD", "VOID", "WD", "WDS", "WDT"]

ONTOLOGY = URIRef('https://w3id.org/cmc-kg/ontology')
ONTOLOGY_VERSION = URIRef('https://w3id.org/cmc-kg/ontology/0.1.0')
ID = Namespace('https://w3id.org/cmc-kg/id/')
GRAPH = Namespace('https://w3id.org/cmc-kg/graph/')
P = Namespace('http://www.wikidata.org/prop/')
PQ = Namespace('http://www.wikidata.org/prop/qualifier/')
PS = Namespace('http://www.wikidata.org/prop/statement/')
SD = Namespace('http://www.w3.org/ns/sparql-service-description#')
VOID = Namespace('http://rdfs.org/ns/void#')
WD = Namespace('http://www.wikidata.org/entity/')
WDS = Namespace('http://www.wikidata.org/entity/statement/')
WDT = Namespace('http://www.wikidata.org/prop/direct/')


# The named graphs the build writes besides one per source folder.
ONTOLOGY_GRAPH = GRAPH.ontology
SOURCES_GRAPH = GRAPH.sources
INFERRED_GRAPH = GRAPH.inferred
# Graphs `cmc-kg push` writes into a remote engine besides the build's: which build it holds, and the merged
# default graph for engines whose own default graph is the union of all graphs (Virtuoso).
PUSH_GRAPH = GRAPH.push
MERGED_GRAPH = GRAPH.merged


class CMC(DefinedNamespace):
    """Every term the ontology declares."""

    _fail = True
    _NS = Namespace('https://w3id.org/cmc-kg/ontology#')

    Acceptance: URIRef
    Accession: URIRef
    Adoption: URIRef
    AdvisoryCommittee: URIRef
    AmbassadorRole: URIRef
    AntiPersonnelMine: URIRef
    Approval: URIRef
    Around: URIRef
    AtLeast: URIRef
    BecameParty: URIRef
    BecameSignatory: URIRef
    Campaign: URIRef
    Change: URIRef
    ChangeKind: URIRef
    ChangeKinds: URIRef
    City: URIRef
    CivilSocietyOrganization: URIRef
    ClaimAdded: URIRef
    ClaimRemoved: URIRef
    ClearanceCompleted: URIRef
    ClusterMunition: URIRef
    ClusterMunitionStatus: URIRef
    ClusterMunitionStatusKind: URIRef
    ClusterMunitionStatuses: URIRef
    Coalition: URIRef
    Conference: URIRef
    ConsentToBeBound: URIRef
    Contaminated: URIRef
    CoordinatorRole: URIRef
    Country: URIRef
    CuratedDecision: URIRef
    DateChanged: URIRef
    Declaration: URIRef
    DepositaryNote: URIRef
    Derived: URIRef
    DiplomaticProcess: URIRef
    Discrepancy: URIRef
    EntryIntoForce: URIRef
    EntryIntoForceForState: URIRef
    Event: URIRef
    Exactly: URIRef
    ExplosiveRemnantsOfWar: URIRef
    FaithBasedGroup: URIRef
    FormerProducer: URIRef
    FormerStockpiler: URIRef
    Founding: URIRef
    FoundingMemberRole: URIRef
    FoundingOrganizationRole: URIRef
    Goal: URIRef
    GovernanceBoard: URIRef
    GovernanceBody: URIRef
    Initiative: URIRef
    IsoCodeMatch: URIRef
    Landmine: URIRef
    LinkMethod: URIRef
    LinkMethods: URIRef
    M49Area: URIRef
    M49Areas: URIRef
    M49IntermediateRegion: URIRef
    M49Region: URIRef
    M49SubRegion: URIRef
    Measure: URIRef
    Measures: URIRef
    MeetingOfStatesParties: URIRef
    MemberRole: URIRef
    MembershipAdded: URIRef
    MembershipEnded: URIRef
    MembershipRole: URIRef
    Merger: URIRef
    MoreThan: URIRef
    NGO: URIRef
    NationalCampaign: URIRef
    NationallyBasedOrganization: URIRef
    NoteAdded: URIRef
    NoteChanged: URIRef
    NumberOfAdoptingStates: URIRef
    NumberOfAmbassadors: URIRef
    NumberOfContaminatedStates: URIRef
    NumberOfCountries: URIRef
    NumberOfCountriesWithUse: URIRef
    NumberOfFormerProducerParties: URIRef
    NumberOfFormerUsersProducersStockpilersJoined: URIRef
    NumberOfInstrumentsForEntryIntoForce: URIRef
    NumberOfMemberOrganizations: URIRef
    NumberOfNonMemberStatesWithStocks: URIRef
    NumberOfParties: URIRef
    NumberOfPartiesThatStockpiled: URIRef
    NumberOfProducerStates: URIRef
    NumberOfRatifications: URIRef
    NumberOfSignatories: URIRef
    NumberOfSignatoriesNotRatified: URIRef
    NumberOfStaff: URIRef
    NumberOfStatesThatDestroyedStocks: URIRef
    NumberOfStatesWithStocksToDestroy: URIRef
    NumberOfStockpilingStates: URIRef
    NumberOfStrategicObjectives: URIRef
    NumberOfUserStates: URIRef
    Office: URIRef
    OpeningForSignature: URIRef
    OrganizationAdded: URIRef
    OrganizationKind: URIRef
    OrganizationKinds: URIRef
    OrganizationRemoved: URIRef
    ParticipantRole: URIRef
    Participation: URIRef
    Primary: URIRef
    PrizeAward: URIRef
    Producer: URIRef
    ProfessionalOrganization: URIRef
    Protocol: URIRef
    ProvisionalApplication: URIRef
    Qualifier: URIRef
    Qualifiers: URIRef
    QuantitativeClaim: URIRef
    Ratification: URIRef
    ReconciliationScore: URIRef
    Registration: URIRef
    ResearchAndMonitoringProgramme: URIRef
    RetainedForTraining: URIRef
    ReviewConference: URIRef
    Secondary: URIRef
    Signature: URIRef
    SourceDocument: URIRef
    SourceQualities: URIRef
    SourceQuality: URIRef
    SourceUpdated: URIRef
    StaffRole: URIRef
    SteeringCommittee: URIRef
    SteeringCommitteeMemberRole: URIRef
    StockpileDestroyed: URIRef
    Stockpiled: URIRef
    Stockpiler: URIRef
    StrategicObjective: URIRef
    Succession: URIRef
    Survivor: URIRef
    Tertiary: URIRef
    ThresholdReached: URIRef
    Transferor: URIRef
    Treaty: URIRef
    TreatyAction: URIRef
    TreatyActionAdded: URIRef
    TreatyActionRemoved: URIRef
    TreatyEvent: URIRef
    User: URIRef
    WeaponType: URIRef
    WeaponTypes: URIRef
    WikidataLink: URIRef
    WithdrawalEffective: URIRef
    WithdrawalNotification: URIRef
    WithdrawalNotified: URIRef
    WithdrawalTookEffect: URIRef
    WorldwideOrganization: URIRef
    actor: URIRef
    adopted: URIRef
    affectedBy: URIRef
    asOf: URIRef
    asOfNotAfter: URIRef
    asOfNotBefore: URIRef
    authenticLanguage: URIRef
    award: URIRef
    birthDate: URIRef
    campaignsAgainst: URIRef
    campaignsFor: URIRef
    changeKind: URIRef
    city: URIRef
    claimSubject: URIRef
    commit: URIRef
    computedFrom: URIRef
    computedValue: URIRef
    concerns: URIRef
    country: URIRef
    date: URIRef
    depositary: URIRef
    derivationRule: URIRef
    disputedClaim: URIRef
    endDate: URIRef
    entityNamespace: URIRef
    foundedOrganization: URIRef
    founder: URIRef
    graphNamespace: URIRef
    hasGoal: URIRef
    inForceFrom: URIRef
    inM49Area: URIRef
    inVersion: URIRef
    isoAlpha2: URIRef
    isoAlpha3: URIRef
    laureate: URIRef
    linkMethod: URIRef
    linkedEntity: URIRef
    matchScore: URIRef
    measure: URIRef
    mergedOrganization: URIRef
    monitors: URIRef
    nationality: URIRef
    newValue: URIRef
    nobelPrizeLaureateId: URIRef
    officialName: URIRef
    oldValue: URIRef
    ordinal: URIRef
    partOfProcess: URIRef
    participant: URIRef
    partyFrom: URIRef
    partyUntil: URIRef
    path: URIRef
    period: URIRef
    place: URIRef
    president: URIRef
    prohibits: URIRef
    protocolTo: URIRef
    purpose: URIRef
    qualifier: URIRef
    quality: URIRef
    quantity: URIRef
    quote: URIRef
    readOn: URIRef
    registrationNumber: URIRef
    repository: URIRef
    resultingOrganization: URIRef
    rule: URIRef
    scheduledEffectiveDate: URIRef
    setUpBy: URIRef
    signedOn: URIRef
    sinceVersion: URIRef
    sourceKey: URIRef
    state: URIRef
    status: URIRef
    survivorOf: URIRef
    towards: URIRef
    treaty: URIRef
    untcName: URIRef
    untcNumber: URIRef
    untsCitation: URIRef
    value: URIRef
    wholeListOf: URIRef
    wikidataItem: URIRef


PREFIXES: dict[str, Namespace | type[DefinedNamespace]] = {
    "cmc": CMC._NS, "owl": OWL, "rdf": RDF, "rdfs": RDFS, "xsd": XSD, "skos": SKOS,
    "dcterms": DCTERMS, "org": ORG, "prov": PROV, "schema": SDO, "foaf": FOAF, "time": TIME,
    "country": Namespace(str(ID) + "country/"),
    "kgorg": Namespace(str(ID) + "org/"),
    "person": Namespace(str(ID) + "person/"),
    "place": Namespace(str(ID) + "place/"),
    "treaty": Namespace(str(ID) + "treaty/"),
    "event": Namespace(str(ID) + "event/"),
    "action": Namespace(str(ID) + "action/"),
    "membership": Namespace(str(ID) + "membership/"),
    "claim": Namespace(str(ID) + "claim/"),
    "goal": Namespace(str(ID) + "goal/"),
    "office": Namespace(str(ID) + "office/"),
    "note": Namespace(str(ID) + "note/"),
    "source": Namespace(str(ID) + "source/"),
    "link": Namespace(str(ID) + "link/"),
    "m49": Namespace(str(ID) + "m49/"),
    "document": Namespace(str(ID) + "document/"),
    "participation": Namespace(str(ID) + "participation/"),
    "status": Namespace(str(ID) + "status/"),
    "change": Namespace(str(ID) + "change/"),
    "id": ID,
    "graph": GRAPH,
    "p": P,
    "pq": PQ,
    "ps": PS,
    "sd": SD,
    "void": VOID,
    "wd": WD,
    "wds": WDS,
    "wdt": WDT,
}


def bind_prefixes(graph):
    """Bind the project's prefixes so that serialisations are readable."""
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace, override=True, replace=True)
    return graph
