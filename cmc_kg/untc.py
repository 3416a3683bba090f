"""Read the UN Treaty Collection's status pages into the sourced tables in reference/ (`cmc-kg refresh untc`).

The depositary publishes one HTML status page per instrument; the tables in reference/ are what the graph is
generated from (`cmc-kg import-tables`). Parsing is strict: a page whose layout differs from the one this
module knows stops the refresh with what was expected and where, and no table is written until every page has
parsed, each through a temporary file renamed over the old one.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import html
import io
import os
import re
import tempfile
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .namespaces import ONTOLOGY
from .tables import COUNTRIES_FILE, INSTRUMENTS, NOTES_FILE, PARTICIPANT_FILES

__all__ = ["PAGE_URL", "LayoutError", "Page", "parse_page", "read_pages", "tables_from_pages",
           "write_tables", "refresh_untc"]

PAGE_URL = "https://treaties.un.org/Pages/ViewDetails.aspx?src=TREATY&mtdsg_no={mtdsg}&chapter=26&clang=_en"

# Entry into force for a state by Article 17 of the CCM and of the Mine Ban Treaty: the threshold instrument
# (30th, 40th), counted in the table sorted by date; successions are left out (the rule does not apply).
ENTRY_INTO_FORCE_THRESHOLD = {"XXVI-6": 30, "XXVI-5": 40}

# The depositary's suffix after a date -> consent type (reference/SOURCES.md).
CONSENT_SUFFIX = {"": "ratification", "A": "acceptance", "AA": "approval", "a": "accession", "d": "succession",
                  "P": "consent_to_be_bound"}

# Columns of each table, in the order the tables hold them.
COLUMNS = {
    "ccm": ["treaty", "untc_mtdsg", "untc_participant", "iso3", "iso2", "signature_date",
            "provisional_application_date", "consent_type", "consent_date", "eif_for_state_derived_art17",
            "status_at_untc_date", "withdrawn_entries_bracketed_by_untc", "withdrawal_notification_date",
            "withdrawal_effective_date", "untc_footnotes", "untc_status_as_at"],
    "mbt": ["treaty", "untc_mtdsg", "untc_participant", "iso3", "iso2", "signature_date", "consent_type",
            "consent_date", "eif_for_state_derived_art17", "status_at_untc_date", "withdrawn_entries_bracketed_by_untc",
            "withdrawal_notification_date", "withdrawal_effective_date", "untc_footnotes", "untc_status_as_at"],
    "ccw": ["treaty", "untc_mtdsg", "untc_participant", "iso3", "iso2", "signature_date", "consent_type",
            "consent_date", "status_at_untc_date", "withdrawn_entries_bracketed_by_untc", "withdrawal_notification_date",
            "withdrawal_effective_date", "untc_footnotes", "untc_status_as_at"],
    "ccw-protocols": ["instrument", "untc_mtdsg", "untc_participant", "iso3", "iso2", "consent_type", "consent_date",
                      "withdrawn_entries_bracketed_by_untc", "untc_footnotes", "untc_status_as_at"],
    "notes": ["untc_mtdsg", "note_no", "participants", "note_text", "untc_status_as_at"],
}
# The end-notes the notes table holds: those of the three conventions (the protocols' notes are not recorded).
NOTES_OF = ("XXVI-6", "XXVI-5", "XXVI-2")
RETRIEVAL_FILE = "untc_pages.csv"
# The source records (graph/sources.ttl) whose as-at date is the pages': the depositary's tables and the dates
# derived from them. (UNTC-COUNTS, counts for days that claims name, keeps the date its counts were checked on.)
SOURCE_KEYS = ("UNTC", "UNTC-ART17")
RETRIEVAL_COLUMNS = ["untc_mtdsg", "url", "read_from", "status_as_at", "retrieved", "sha256"]

MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
LONG_MONTHS = {name: number for number, name in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"), start=1)}


class LayoutError(Exception):
    """A page does not have the layout the parser knows; the message names the page and what was expected."""


@dataclass
class Entry:
    """One dated cell: '[12 May 2004 a]' is 2004-05-12, suffix 'a', bracketed (withdrawn)."""

    date: str
    suffix: str
    bracketed: bool


@dataclass
class Participant:
    name: str
    notes: list[str]
    cells: dict[str, Entry | None]


@dataclass
class Page:
    """What one status page says: its instrument, the date it is as at, its participants and end-notes."""

    mtdsg: str
    as_at: str
    participants: list[Participant]
    notes: dict[str, str]
    source: str = ""
    sha256: str = ""
    retrieved: str = ""
    url: str = ""


# Column headings of the participant table -> the cell key they hold.
HEADINGS = (
    (re.compile(r"^Participant$"), "participant"),
    (re.compile(r"^Signature$"), "signature"),
    (re.compile(r"^Provisional application\(n\)$"), "provisional"),
    (re.compile(r"(Ratification|Accession\(a\)|Succession\(d\)|Consent to be bound\(P\))"), "consent"),
)
_TAGS = re.compile(r"<[^>]+>")
_ENTRY = re.compile(r"^(\[)?\s*(\d{1,2}) ([A-Z][a-z]{2}) (\d{4})\s*(AA|A|a|d|P|n)?\s*(\])?$")


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed (a <br> is a space)."""
    fragment = re.sub(r"(?i)<br\s*/?>", " ", fragment)
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub("", fragment))).strip()


def _one(pattern: str, page: str, where: str, expected: str, flags=re.S) -> re.Match:
    match = re.search(pattern, page, flags)
    if not match:
        raise LayoutError(f"{where}: expected {expected}; the page layout may have changed")
    return match


def _table(page: str, id_suffix: str, where: str, expected: str) -> str:
    match = _one(rf"<table\b[^>]*\bid=\"[^\"]*{id_suffix}\"[^>]*>(.*?)</table>", page, where, expected)
    return match.group(1)


def _rows(table: str) -> list[list[str]]:
    return [re.findall(r"(?is)<td\b[^>]*>(.*?)</td>", row) for row in re.findall(r"(?is)<tr\b[^>]*>(.*?)</tr>", table)]


def _entry(cell: str, where: str) -> Entry | None:
    text = _text(cell)
    if not text:
        return None
    match = _ENTRY.match(text)
    if not match or match.group(3) not in MONTHS or bool(match.group(1)) != bool(match.group(6)):
        raise LayoutError(f"{where}: expected a date such as '3 Dec 2008', '9 Apr 2013 a' or '[12 May 2004 a]', "
                          f"found {text!r}")
    date = dt.date(int(match.group(4)), MONTHS[match.group(3)], int(match.group(2)))
    return Entry(date.isoformat(), match.group(5) or "", bool(match.group(1)))


def parse_page(page: str, where: str) -> Page:
    """Parse one UNTC status page (ViewDetails.aspx, src=TREATY) into a Page; LayoutError if it is not one."""
    day, month, year = _one(r"STATUS AS AT\s*:\s*(\d\d)-(\d\d)-(\d{4})", page, where,
                            "the header 'STATUS AS AT : DD-MM-YYYY'").groups()
    as_at = dt.date(int(year), int(month), int(day)).isoformat()
    numbers = set(re.findall(r"mtdsg_no=(XXVI-[0-9a-z-]+)", page))
    if len(numbers) != 1 or next(iter(numbers)) not in INSTRUMENTS:
        raise LayoutError(f"{where}: expected one MTDSG number of {', '.join(INSTRUMENTS)} in the page's links "
                          f"(mtdsg_no=...), found {sorted(numbers) or 'none'}")
    mtdsg = numbers.pop()
    rows = _rows(_table(page, "_tblgrid", where, "the participant table (<table id=\"..._tblgrid\">)"))
    if not rows:
        raise LayoutError(f"{where}: the participant table has no rows")
    keys = []
    for heading in (_text(cell) for cell in rows[0]):
        key = next((key for pattern, key in HEADINGS if pattern.search(heading)), None)
        if key is None or key in keys:
            raise LayoutError(f"{where}: unexpected column {heading!r} in the participant table; expected "
                              f"Participant, Signature, Provisional application(n) and a consent column")
        keys.append(key)
    if keys[0] != "participant" or "consent" not in keys:
        raise LayoutError(f"{where}: expected the columns Participant ... and a consent column, found {keys}")
    participants = []
    for number, cells in enumerate(rows[1:], start=2):
        if len(cells) != len(keys):
            raise LayoutError(f"{where}: participant table row {number} has {len(cells)} cells, expected {len(keys)}")
        notes = [n for sup in re.findall(r"(?is)<sup>(.*?)</sup>", cells[0]) for n in re.findall(r"href='#(\d+)'", sup)]
        name = _text(re.sub(r"(?is)<sup>.*?</sup>", "", cells[0]))
        if not name:
            raise LayoutError(f"{where}: participant table row {number} has no participant name")
        entries = {key: _entry(cell, f"{where}: {name}, column {key}") for key, cell in zip(keys[1:], cells[1:])}
        participants.append(Participant(name, notes, entries))
    end_notes = {}
    if "dgNotesAll" in page:
        for block in re.findall(r"(?is)<div\b[^>]*class=\"divNotesAll\"[^>]*>(.*?)</div>",
                                _table(page, "_dgNotesAll", where, "the end-note table (id \"..._dgNotesAll\")")):
            match = re.match(r"(?is)\s*<a name='(\d+)'>\1</a>(.*)$", block)
            if not match:
                raise LayoutError(f"{where}: expected an end-note to start with <a name='N'>N</a>, found "
                                  f"{_text(block)[:60]!r}")
            end_notes[match.group(1)] = _text(match.group(2))
    return Page(mtdsg, as_at, participants, end_notes, source=where)


class Countries:
    """UNTC participant names -> ISO 3166-1 codes: the names the tables already hold, then ISO-CODES names."""

    def __init__(self, reference: Path):
        self.by_name: dict[str, tuple[str, str]] = {}
        self.alpha2: dict[str, str] = {}
        with open(reference / COUNTRIES_FILE, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["row_kind"] != "iso3166_1":
                    continue
                self.alpha2[row["iso_alpha3"]] = row["iso_alpha2"]
                for name in (row["iso_codes_4_15_name"], row["iso_codes_4_15_official_name"], row["owid_name"]):
                    if name:
                        self.by_name.setdefault(_key(name), (row["iso_alpha3"], row["iso_alpha2"]))
        for file in PARTICIPANT_FILES.values():
            if (reference / file).exists():
                with open(reference / file, encoding="utf-8", newline="") as handle:
                    for row in csv.DictReader(handle):
                        self.by_name[_key(row["untc_participant"])] = (row["iso3"], row["iso2"])

    def codes(self, name: str, where: str) -> tuple[str, str]:
        try:
            return self.by_name[_key(name)]
        except KeyError:
            raise LayoutError(f"{where}: participant {name!r} matches no ISO 3166-1 name in {COUNTRIES_FILE} and no "
                              f"UNTC name the participant tables hold; nothing was written") from None


def _key(name: str) -> str:
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    name = re.sub(r"\(.*?\)", "", name).replace("saint ", "st ").replace("&", "and")
    return re.sub(r"[^a-z0-9]+", " ", name).strip()


def _long_date(text: str) -> str:
    day, month, year = text.split()
    return dt.date(int(year), LONG_MONTHS[month], int(day)).isoformat()


_NOTIFIED = re.compile(r"On (\d{1,2} [A-Z][a-z]+ \d{4}), the Government of [^.]*?deposited with the Secretary-General "
                       r"a notification of withdrawal")
_EFFECTIVE = re.compile(r"The withdrawal (?:took|will take) effect for [^.]*? on (\d{1,2} [A-Z][a-z]+ \d{4})")


def _withdrawal(texts: list[str]) -> tuple[str, str]:
    """The notification and effective dates of a withdrawal, from the end-notes a participant carries."""
    notified = [_long_date(m.group(1)) for t in texts for m in _NOTIFIED.finditer(t)]
    effective = [_long_date(m.group(1)) for t in texts for m in _EFFECTIVE.finditer(t)]
    return (notified[-1] if notified else ""), (effective[-1] if effective else "")


def _sixth_month(date: str) -> str:
    """The first day of the sixth month after the month of a date."""
    day = dt.date.fromisoformat(date)
    month = day.month + 6
    return dt.date(day.year + (month - 1) // 12, (month - 1) % 12 + 1, 1).isoformat()


def tables_from_pages(pages: list[Page], reference: Path) -> dict[str, list[dict[str, str]]]:
    """The rows of each participant table and of the notes table, as reference/ holds them."""
    countries = Countries(reference)
    tables: dict[str, list[dict[str, str]]] = {key: [] for key in COLUMNS}
    by_mtdsg = {page.mtdsg: page for page in pages}
    missing = [mtdsg for mtdsg in INSTRUMENTS if mtdsg not in by_mtdsg]
    if missing:
        raise LayoutError(f"no status page for {', '.join(missing)}: a refresh needs every page "
                          f"({', '.join(INSTRUMENTS)}), or the tables would be half updated")
    for mtdsg, (_, _, key, title) in INSTRUMENTS.items():
        page = by_mtdsg[mtdsg]
        threshold = None
        if mtdsg in ENTRY_INTO_FORCE_THRESHOLD:
            deposits = sorted(p.cells["consent"].date for p in page.participants
                              if p.cells["consent"] and p.cells["consent"].suffix != "d")
            n = ENTRY_INTO_FORCE_THRESHOLD[mtdsg]
            threshold = deposits[n - 1] if len(deposits) >= n else None
        for participant in page.participants:
            where = f"{page.source}: {participant.name}"
            iso3, iso2 = countries.codes(participant.name, where)
            consent = participant.cells.get("consent")
            signature = participant.cells.get("signature")
            provisional = participant.cells.get("provisional")
            if consent and consent.suffix not in CONSENT_SUFFIX:
                raise LayoutError(f"{where}: expected a consent suffix of {sorted(CONSENT_SUFFIX)}, found {consent.suffix!r}")
            row = {"untc_mtdsg": mtdsg, "untc_participant": participant.name, "iso3": iso3, "iso2": iso2,
                   "consent_type": CONSENT_SUFFIX[consent.suffix] if consent else "",
                   "consent_date": consent.date if consent else "",
                   "untc_footnotes": ",".join(participant.notes), "untc_status_as_at": page.as_at}
            bracketed = any(entry and entry.bracketed for entry in participant.cells.values())
            row["withdrawn_entries_bracketed_by_untc"] = "yes" if bracketed else ""
            if key == "ccw-protocols":
                row["instrument"] = title
                tables[key].append({column: row[column] for column in COLUMNS[key]})
                continue
            notified, effective = _withdrawal([page.notes.get(n, "") for n in participant.notes])
            if bracketed:
                status = "withdrawn"
            elif consent and notified:
                status = "state_party_withdrawal_pending" if not effective or effective > page.as_at else "withdrawn"
            else:
                status = "state_party" if consent else "signatory_not_ratified"
            eif = ""
            if threshold and consent and consent.suffix != "d":
                eif = _sixth_month(max(consent.date, threshold))
            row.update({"treaty": title, "signature_date": signature.date if signature else "",
                        "provisional_application_date": provisional.date if provisional else "",
                        "eif_for_state_derived_art17": eif, "status_at_untc_date": status,
                        "withdrawal_notification_date": notified, "withdrawal_effective_date": effective})
            tables[key].append({column: row[column] for column in COLUMNS[key]})
        if mtdsg in NOTES_OF:
            carriers: dict[str, list[str]] = {}
            for participant in page.participants:
                for number in participant.notes:
                    carriers.setdefault(number, []).append(participant.name)
            for number, text in sorted(page.notes.items(), key=lambda item: int(item[0])):
                tables["notes"].append({"untc_mtdsg": mtdsg, "note_no": number,
                                        "participants": "; ".join(carriers.get(number, [])),
                                        "note_text": text, "untc_status_as_at": page.as_at})
    return tables


TABLE_FILES = {**PARTICIPANT_FILES, "notes": NOTES_FILE}


def _csv(columns: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_tables(tables: dict[str, list[dict[str, str]]], pages: list[Page], reference: Path) -> list[Path]:
    """Write every table (and the record of the pages read) to a temporary file first, then rename each over
    the old one: a failure before the renames leaves every table as it was. Returns the tables that changed."""
    contents = {reference / TABLE_FILES[key]: _csv(COLUMNS[key], rows) for key, rows in tables.items()}
    contents[reference / RETRIEVAL_FILE] = _csv(RETRIEVAL_COLUMNS, [
        {"untc_mtdsg": p.mtdsg, "url": p.url or PAGE_URL.format(mtdsg=p.mtdsg), "read_from": p.source,
         "status_as_at": p.as_at, "retrieved": p.retrieved, "sha256": p.sha256}
        for p in sorted(pages, key=lambda p: list(INSTRUMENTS).index(p.mtdsg))])
    staged, changed = [], []
    try:
        for path, text in contents.items():
            if path.exists() and path.read_text(encoding="utf-8") == text:
                continue
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            staged.append((temporary, path))
        for temporary, path in staged:
            os.replace(temporary, path)
            changed.append(path)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return changed


def _atomic_write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def source_record_dates(sources_file: Path, as_at: str) -> str:
    """graph/sources.ttl with the as-at date (cmc:asOf) of the UNTC source records set to the pages' date."""
    records = sources_file.read_text(encoding="utf-8").split("\n\n")  # one record per paragraph
    dated = re.compile(r'cmc:asOf "\d{4}-\d{2}-\d{2}"\^\^xsd:date')
    for key in SOURCE_KEYS:
        found = [i for i, record in enumerate(records) if f'cmc:sourceKey "{key}" ;' in record]
        if len(found) != 1 or len(dated.findall(records[found[0]])) != 1:
            raise LayoutError(f"{sources_file}: expected one record with cmc:sourceKey \"{key}\" holding one "
                              f"cmc:asOf \"YYYY-MM-DD\"^^xsd:date")
        records[found[0]] = dated.sub(f'cmc:asOf "{as_at}"^^xsd:date', records[found[0]])
    return "\n\n".join(records)


def read_pages(files: list[Path] | None, retrieved: str, url_template: str = PAGE_URL,
               timeout: float = 60.0, progress=lambda message: None) -> list[Page]:
    """Parse saved copies (files) or download every page from the depositary (url_template)."""
    pages = []
    if files:
        # A saved copy may be gzipped (tests/data/untc/*.html.gz); its checksum is that of the page itself.
        sources = [(str(path), gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes(), "")
                   for path in files]
    else:
        sources = []
        for mtdsg in INSTRUMENTS:
            url = url_template.format(mtdsg=mtdsg)
            progress(f"downloading {url}")
            request = urllib.request.Request(url, headers={"User-Agent": f"cmc-kg refresh ({ONTOLOGY})"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    sources.append((url, response.read(), url))
            except OSError as error:
                raise LayoutError(f"{url}: could not download the status page ({error}); save the pages and give "
                                  f"them as files") from error
    for where, data, url in sources:
        page = parse_page(data.decode("utf-8"), where)
        page.sha256, page.retrieved, page.url = hashlib.sha256(data).hexdigest(), retrieved, url
        pages.append(page)
    seen: dict[str, str] = {}
    for page in pages:
        if page.mtdsg in seen:
            raise LayoutError(f"{page.source} and {seen[page.mtdsg]} are both the page of {page.mtdsg}")
        seen[page.mtdsg] = page.source
    return pages


def refresh_untc(reference: Path, files: list[Path] | None, retrieved: str, url_template: str = PAGE_URL,
                 progress=lambda message: None, sources_file: Path | None = None) -> tuple[list[Page], list[Path]]:
    """Read the pages, parse them into the tables and write those that changed, and set the as-at date of the
    source records (sources_file, graph/sources.ttl) to the pages'; the caller regenerates graph/ and rebuilds."""
    pages = read_pages(files, retrieved, url_template, progress=progress)
    tables = tables_from_pages(pages, reference)
    dates = sorted({page.as_at for page in pages})
    if len(dates) != 1:
        raise LayoutError(f"the pages are as at different dates ({', '.join(dates)}); read them again together")
    sources = source_record_dates(sources_file, dates[0]) if sources_file else None
    changed = write_tables(tables, pages, reference)
    if sources_file and sources is not None and sources != sources_file.read_text(encoding="utf-8"):
        _atomic_write(sources_file, sources)
        changed.append(sources_file)
    return pages, changed
