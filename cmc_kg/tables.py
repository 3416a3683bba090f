"""Turn the sourced tables in reference/ into Turtle in graph/ (`cmc-kg import-tables`).

The tables are the record (reference/SOURCES.md says where each value comes from); the Turtle
they produce is committed so that a reader of graph/ sees every fact, and regenerated, never
hand-edited. Output is sorted and byte-stable, so a diff of graph/ shows only what the tables changed.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

from rdflib import Literal, URIRef

from .namespaces import CMC, DCTERMS, PREFIXES, RDF, RDFS, SKOS, XSD
from .terms import TurtleWriter

__all__ = ["import_tables", "INSTRUMENTS", "Instrument", "TableError"]

ACTION = PREFIXES["action"]
COUNTRY = PREFIXES["country"]
M49 = PREFIXES["m49"]
NOTE = PREFIXES["note"]
PARTICIPATION = PREFIXES["participation"]
TREATY = PREFIXES["treaty"]

class Instrument(NamedTuple):
    """One UNTC status page: how the graph names its treaty and how the reference tables name the page."""

    treaty: str  # the treaty's slug in treaty:
    name: str  # its name in action labels
    table: str  # the reference table its rows go to (PARTICIPANT_FILES)
    title: str  # its name as the reference tables spell it (the protocols' short titles, else the depositary's)


# UNTC MTDSG number -> the instrument.
INSTRUMENTS = {
    "XXVI-6": Instrument("ccm", "Convention on Cluster Munitions", "ccm", "Convention on Cluster Munitions"),
    "XXVI-5": Instrument("mbt", "Mine Ban Treaty", "mbt",
                         "Convention on the Prohibition of the Use, Stockpiling, Production and Transfer of "
                         "Anti-Personnel Mines and on their Destruction"),
    "XXVI-2": Instrument("ccw", "Convention on Certain Conventional Weapons", "ccw",
                         "Convention on Prohibitions or Restrictions on the Use of Certain Conventional Weapons which "
                         "may be deemed to be Excessively Injurious or to have Indiscriminate Effects (with Protocols "
                         "I, II and III)"),
    "XXVI-2-a": Instrument("ccw-protocol-iv", "CCW Protocol IV", "ccw-protocols",
                           "CCW Additional Protocol IV (Protocol on Blinding Laser Weapons), Vienna, 13 October 1995"),
    "XXVI-2-b": Instrument("ccw-amended-protocol-ii", "CCW Amended Protocol II", "ccw-protocols",
                           "CCW Protocol II as amended on 3 May 1996 (Mines, Booby-Traps and Other Devices)"),
    "XXVI-2-c": Instrument("ccw-amendment-article-i", "CCW Amendment to Article I", "ccw-protocols",
                           "Amendment to Article I of the CCW, Geneva, 21 December 2001"),
    "XXVI-2-d": Instrument("ccw-protocol-v", "CCW Protocol V", "ccw-protocols",
                           "CCW Protocol V on Explosive Remnants of War, Geneva, 28 November 2003"),
}

# UNTC consent types (reference/SOURCES.md) -> (class, IRI segment, label).
CONSENT = {
    "ratification": (CMC.Ratification, "ratification", "ratification"),
    "acceptance": (CMC.Acceptance, "acceptance", "acceptance"),
    "approval": (CMC.Approval, "approval", "approval"),
    "accession": (CMC.Accession, "accession", "accession"),
    "succession": (CMC.Succession, "succession", "succession"),
    "consent_to_be_bound": (CMC.ConsentToBeBound, "consent", "consent to be bound"),
}

PARTICIPANT_FILES = {
    "ccm": "ccm_participants_untc.csv",
    "mbt": "mbt_participants_untc.csv",
    "ccw": "ccw_participants_untc.csv",
    "ccw-protocols": "ccw_protocols_participants_untc.csv",
}
COUNTRIES_FILE = "countries_iso_wikidata_owid.csv"
NOTES_FILE = "untc_footnotes_ccm_mbt_ccw.csv"
SOURCES_FILE = "sources.ttl"  # in graph/: the source registry
M49_FILE = "m49_regions.csv"

# The folders (source slugs) the generated files go to.
UNTC_FOLDER = "untc"
ART17_FOLDER = "untc-art17"
ISO_FOLDER = "iso-codes"
M49_FOLDER = "unsd-m49-2024-06-19"
OWID_FOLDER = "owid-cr"


class TableError(Exception):
    """A reference table has a value the import cannot place; the message names file and line."""


def numbered_rows(path: Path, delimiter: str = ",", comments: bool = False) -> list[tuple[int, dict[str, str]]]:
    """(line, row) for each row of a CSV or TSV file, as csv.DictReader reads them (blank rows skipped, missing
    columns absent); with ``comments``, lines starting with '#' are no rows. The line is the file's own where
    the row starts, comment lines and quoted line breaks counted, so that an error can name it."""
    with open(path, encoding="utf-8", newline="") as handle:
        numbered = [(n, line) for n, line in enumerate(handle, start=1) if not (comments and line.startswith("#"))]
    reader = csv.reader((line for _, line in numbered), delimiter=delimiter)
    header = next(reader, [])
    rows: list[tuple[int, dict[str, str]]] = []
    while True:
        start = reader.line_num  # lines read so far: the next row starts on the one after them
        values = next(reader, None)
        if values is None:
            return rows
        if values:
            rows.append((numbered[start][0], dict(zip(header, values))))


def _date(value: str) -> Literal:
    return Literal(value, datatype=XSD.date)


def _countries(reference: Path) -> tuple[TurtleWriter, dict[str, str], dict[str, str]]:
    """Every ISO 3166-1 entry of ISO-CODES 4.15 with its codes and names; returns ISO3 -> English name
    and ISO3 -> alpha-2 too."""
    turtle, names, alpha2 = TurtleWriter(), {}, {}
    for line, row in numbered_rows(reference / COUNTRIES_FILE):
        if row["row_kind"] != "iso3166_1":
            continue
        code = row["iso_alpha3"]
        if not re.fullmatch(r"[A-Z]{3}", code) or not re.fullmatch(r"[A-Z]{2}", row["iso_alpha2"]):
            raise TableError(f"{reference / COUNTRIES_FILE}:{line}: not an ISO 3166-1 code pair: {code!r}, {row['iso_alpha2']!r}")
        country = COUNTRY[code]
        names[code] = row["iso_codes_4_15_name"]
        alpha2[code] = row["iso_alpha2"]
        turtle.add(country, RDF.type, CMC.Country)
        turtle.add(country, RDFS.label, Literal(row["iso_codes_4_15_name"], lang="en"))
        turtle.add(country, CMC.isoAlpha3, Literal(code))
        turtle.add(country, CMC.isoAlpha2, Literal(row["iso_alpha2"]))
        if row["iso_codes_4_15_official_name"]:
            turtle.add(country, CMC.officialName, Literal(row["iso_codes_4_15_official_name"], lang="en"))
    return turtle, names, alpha2


def _common_names(reference: Path) -> TurtleWriter:
    """The names Our World in Data uses for countries ("Laos", "Russia"), where they differ from the ISO name,
    as alternative labels: what people type when they look a state up."""
    turtle = TurtleWriter()
    for _, row in numbered_rows(reference / COUNTRIES_FILE):
        if row["row_kind"] == "iso3166_1" and row["owid_name"] and row["owid_name"] != row["iso_codes_4_15_name"]:
            turtle.add(COUNTRY[row["iso_alpha3"]], SKOS.altLabel, Literal(row["owid_name"], lang="en"))
    return turtle


# The three levels of M49 areas in reference/m49_regions.csv: (code column, name column, class), broadest first.
M49_LEVELS = (
    ("region-code", "region", CMC.M49Region),
    ("sub-region-code", "sub-region", CMC.M49SubRegion),
    ("intermediate-region-code", "intermediate-region", CMC.M49IntermediateRegion),
)


def _m49(reference: Path, names: dict[str, str], alpha2: dict[str, str]) -> TurtleWriter:
    """The M49 regions, sub-regions and intermediate regions as SKOS concepts, and each country's most
    specific area (cmc:inM49Area). A row without a region (the table gives none) links nothing."""
    path = reference / M49_FILE
    turtle = TurtleWriter()
    areas: dict[str, tuple[str, URIRef, str | None]] = {}
    for line, row in numbered_rows(path):
        where = f"{path}:{line}"
        code = row["alpha-3"]
        if code not in names or alpha2[code] != row["alpha-2"]:
            raise TableError(f"{where}: {code!r}/{row['alpha-2']!r} is not an ISO 3166-1 code pair of ISO-CODES")
        parent, area = None, None
        for code_column, name_column, kind in M49_LEVELS:
            number, label = row[code_column], row[name_column]
            if not number and not label:
                continue
            if not re.fullmatch(r"[0-9]{3}", number) or not label or (kind != CMC.M49Region and parent is None):
                raise TableError(f"{where}: {name_column} {label!r} with M49 code {number!r}")
            if areas.setdefault(number, (label, kind, parent)) != (label, kind, parent):
                raise TableError(f"{where}: M49 code {number} is given as {(label, kind, parent)} here and "
                                 f"{areas[number]} before")
            parent = area = number
        if area:
            turtle.add(COUNTRY[code], CMC.inM49Area, M49[area])
    for number, (label, kind, parent) in areas.items():
        concept = M49[number]
        turtle.add(concept, RDF.type, kind)
        turtle.add(concept, RDFS.label, Literal(label, lang="en"))
        turtle.add(concept, SKOS.prefLabel, Literal(label, lang="en"))
        turtle.add(concept, SKOS.notation, Literal(number))
        turtle.add(concept, SKOS.inScheme, CMC.M49Areas)
        if parent is None:
            turtle.add(concept, SKOS.topConceptOf, CMC.M49Areas)
        else:
            turtle.add(concept, SKOS.broader, M49[parent])
    return turtle


class _Participants:
    """The UNTC participant tables as treaty actions, in the UNTC graph and the derived Art. 17 graph."""

    def __init__(self, reference: Path, names: dict[str, str]):
        self.reference, self.names = reference, names
        self.untc_names: dict[str, str] = {}
        self.untc = TurtleWriter()
        self.derived = TurtleWriter()

    def action(self, turtle: TurtleWriter, mtdsg: str, code: str, kind: URIRef, segment: str, label: str, date: str) -> URIRef:
        slug, treaty_name = INSTRUMENTS[mtdsg].treaty, INSTRUMENTS[mtdsg].name
        iri = ACTION[f"{slug}/{code}/{segment}"]
        turtle.add(iri, RDF.type, kind)
        turtle.add(iri, RDFS.label, Literal(f"{self.names[code]}: {label}, {treaty_name}", lang="en"))
        turtle.add(iri, CMC.actor, COUNTRY[code])
        turtle.add(iri, CMC.treaty, TREATY[slug])
        turtle.add(iri, CMC.date, _date(date))
        return iri

    def read(self, key: str) -> None:
        path = self.reference / PARTICIPANT_FILES[key]
        for line, row in numbered_rows(path):
            where = f"{path}:{line}"
            mtdsg, code = row["untc_mtdsg"], row["iso3"]
            if mtdsg not in INSTRUMENTS or code not in self.names:
                raise TableError(f"{where}: unknown treaty {mtdsg!r} or ISO 3166-1 code {code!r}")
            if self.untc_names.setdefault(row["untc_participant"], code) != code:
                raise TableError(f"{where}: {row['untc_participant']!r} names two countries")
            self.untc.add(COUNTRY[code], CMC.untcName, Literal(row["untc_participant"], lang="en"))
            if row.get("signature_date"):
                self.action(self.untc, mtdsg, code, CMC.Signature, "signature", "signature", row["signature_date"])
            if row.get("provisional_application_date"):
                self.action(self.untc, mtdsg, code, CMC.ProvisionalApplication, "provisional-application",
                            "provisional application", row["provisional_application_date"])
            if row["consent_type"]:
                if row["consent_type"] not in CONSENT or not row["consent_date"]:
                    raise TableError(f"{where}: consent type {row['consent_type']!r} without a known kind or date")
                self.action(self.untc, mtdsg, code, *CONSENT[row["consent_type"]], row["consent_date"])
            notification = None
            if row.get("withdrawal_notification_date"):
                notification = self.action(self.untc, mtdsg, code, CMC.WithdrawalNotification, "withdrawal-notification",
                                           "notification of withdrawal", row["withdrawal_notification_date"])
            if row.get("withdrawal_effective_date") and row["withdrawal_effective_date"] > row["untc_status_as_at"]:
                # Not yet taken effect at the as-at date (Poland, Mine Ban Treaty: "will take effect ... subject to
                # the condition set forth in the said paragraph"): no cmc:WithdrawalEffective, only the date the
                # depositary gives on the notification, with the depositary's note quoted.
                if notification is None:
                    raise TableError(f"{where}: a withdrawal to take effect later without a notification date")
                self.untc.add(notification, CMC.scheduledEffectiveDate, _date(row["withdrawal_effective_date"]))
                for text in self._withdrawal_notes(mtdsg, row.get("untc_footnotes", "")):
                    self.untc.add(notification, CMC.quote, Literal(text, lang="en"))
                self.untc.add(notification, DCTERMS.description, Literal(
                    f"Not in effect at the depositary's status as at {row['untc_status_as_at']}: the depositary gives "
                    f"{row['withdrawal_effective_date']} as the day the withdrawal will take effect, subject to the "
                    f"condition of the treaty's withdrawal article (the note is quoted).", lang="en"))
            elif row.get("withdrawal_effective_date"):
                self.action(self.untc, mtdsg, code, CMC.WithdrawalEffective, "withdrawal-effective",
                            "withdrawal takes effect", row["withdrawal_effective_date"])
            if row.get("eif_for_state_derived_art17"):
                self.action(self.derived, mtdsg, code, CMC.EntryIntoForceForState, "entry-into-force",
                            "entry into force for the state", row["eif_for_state_derived_art17"])
            self.participation(mtdsg, code, row)

    def participation(self, mtdsg: str, code: str, row: dict[str, str]) -> None:
        """One cmc:Participation per state and treaty: signed, party from (deposit of consent), party until (the
        withdrawal took effect, by the as-at date) in the UNTC graph; in force from (Art. 17) in the derived graph."""
        slug, treaty_name = INSTRUMENTS[mtdsg].treaty, INSTRUMENTS[mtdsg].name
        node = PARTICIPATION[f"{slug}/{code}"]
        self.untc.add(node, RDF.type, CMC.Participation)
        self.untc.add(node, RDFS.label, Literal(f"{self.names[code]} in the {treaty_name}", lang="en"))
        self.untc.add(node, CMC.participant, COUNTRY[code])
        self.untc.add(node, CMC.treaty, TREATY[slug])
        if row.get("signature_date"):
            self.untc.add(node, CMC.signedOn, _date(row["signature_date"]))
        if row["consent_type"]:
            self.untc.add(node, CMC.partyFrom, _date(row["consent_date"]))
        if row.get("withdrawal_effective_date") and row["withdrawal_effective_date"] <= row["untc_status_as_at"]:
            self.untc.add(node, CMC.partyUntil, _date(row["withdrawal_effective_date"]))
        if row.get("eif_for_state_derived_art17"):
            self.derived.add(node, CMC.inForceFrom, _date(row["eif_for_state_derived_art17"]))

    def _withdrawal_notes(self, mtdsg: str, numbers: str) -> list[str]:
        """The texts of the depositary's end-notes a row refers to that speak of a withdrawal."""
        if not hasattr(self, "_note_texts"):
            self._note_texts = {(row["untc_mtdsg"], row["note_no"]): row["note_text"]
                                for _, row in numbered_rows(self.reference / NOTES_FILE)}
        texts = (self._note_texts.get((mtdsg, n.strip())) for n in numbers.replace(",", ";").split(";") if n.strip())
        return [text for text in texts if text and "withdrawal" in text]

    def notes(self) -> TurtleWriter:
        """The depositary's end-notes, each linked to the participants it names."""
        path = self.reference / NOTES_FILE
        turtle = TurtleWriter()
        for line, row in numbered_rows(path):
            instrument = INSTRUMENTS[row["untc_mtdsg"]]
            slug, treaty_name = instrument.treaty, instrument.name
            note = NOTE[f"{slug}/{row['note_no']}"]
            turtle.add(note, RDF.type, CMC.DepositaryNote)
            turtle.add(note, RDFS.label, Literal(f"UNTC end-note {row['note_no']}, {treaty_name}", lang="en"))
            turtle.add(note, CMC.treaty, TREATY[slug])
            turtle.add(note, CMC.ordinal, Literal(int(row["note_no"])))
            turtle.add(note, RDF.value, Literal(row["note_text"], lang="en"))
            for name in filter(None, (n.strip() for n in row["participants"].split(";"))):
                if name not in self.untc_names:
                    raise TableError(f"{path}:{line}: participant {name!r} is in no participant table")
                turtle.add(note, CMC.concerns, COUNTRY[self.untc_names[name]])
        return turtle


def import_tables(reference: Path, graph_dir: Path) -> dict[Path, int]:
    """Write the generated Turtle files; return each file with its number of statements."""
    countries, names, alpha2 = _countries(reference)
    participants = _Participants(reference, names)
    for key in PARTICIPANT_FILES:
        participants.read(key)
    notes = participants.notes()
    outputs = {
        graph_dir / ISO_FOLDER / "countries.ttl": (countries, [COUNTRIES_FILE]),
        graph_dir / UNTC_FOLDER / "participants.ttl": (participants.untc, list(PARTICIPANT_FILES.values())),
        graph_dir / UNTC_FOLDER / "notes.ttl": (notes, [NOTES_FILE]),
        graph_dir / ART17_FOLDER / "entry-into-force-for-states.ttl": (participants.derived, [
            PARTICIPANT_FILES["ccm"], PARTICIPANT_FILES["mbt"]]),
        graph_dir / M49_FOLDER / "regions.ttl": (_m49(reference, names, alpha2), [M49_FILE]),
        graph_dir / OWID_FOLDER / "common-names.ttl": (_common_names(reference), [COUNTRIES_FILE]),
    }
    written = {}
    for path, (turtle, tables) in outputs.items():
        header = (f"# GENERATED by `cmc-kg import-tables` from {', '.join('reference/' + t for t in tables)}.\n"
                  f"# Edit the tables (and reference/SOURCES.md), not this file.\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(turtle.render(header), encoding="utf-8")
        written[path] = sum(len(pairs) for pairs in turtle.statements.values())
    return written
