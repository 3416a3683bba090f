"""`cmc-kg refresh untc`: the saved depositary pages give exactly the tables in reference/, a changed copy gives
exactly its changes, a changed layout stops the refresh with nothing written."""

from __future__ import annotations

import csv
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest
from rdflib import Graph, Literal

from cmc_kg import untc
from cmc_kg.tables import INSTRUMENTS
from cmc_kg.namespaces import CMC
from cmc_kg.settings import REPO_ROOT
from conftest import free_port

SAVED = REPO_ROOT / "tests" / "data" / "untc"
PAGE_FILES = {"XXVI-6": "ccm", "XXVI-5": "ottawa", "XXVI-2": "ccw", "XXVI-2-a": "ccw_p4", "XXVI-2-b": "ccw_p2a",
              "XXVI-2-c": "ccw_art1", "XXVI-2-d": "ccw_p5"}
CHANGED_AS_AT = "2026-02-10"


def saved_pages() -> dict[str, str]:
    return {mtdsg: gzip.decompress((SAVED / f"{name}.html.gz").read_bytes()).decode("utf-8")
            for mtdsg, name in PAGE_FILES.items()}


def _replace_once(page: str, old: str, new: str) -> str:
    assert page.count(old) == 1, old
    return page.replace(old, new)


def changed_pages() -> dict[str, str]:
    """The saved pages as a later status might read (TEST DATA, not facts): status as at 2026-02-10; a new CCM
    accession (Finland, 5 Feb 2026); a new Mine Ban Treaty withdrawal notification (Albania, note 13); a new CCM
    end-note on Austria (note 9)."""
    pages = {mtdsg: page.replace("STATUS AS AT : 03-02-2026", "STATUS AS AT : 10-02-2026")
             for mtdsg, page in saved_pages().items()}
    pages["XXVI-6"] = _replace_once(pages["XXVI-6"], "<td>France<br></td>", "<td>Finland<br></td>\n\t\t<td>&nbsp;</td>"
                                    "\n\t\t<td>&nbsp;</td>\n\t\t<td> &nbsp;5 Feb\t 2026 a<br></td>\n\t</tr>\n\t<tr>\n\t\t"
                                    "<td>France<br></td>")
    pages["XXVI-6"] = _note(_mark(pages["XXVI-6"], "Austria", "9"), "9", "Test note: a communication from Austria.")
    pages["XXVI-5"] = _note(_mark(pages["XXVI-5"], "Albania", "13"), "13", (
        "On 6 February 2026, the Government of Albania deposited with the Secretary-General a notification of "
        "withdrawal (see depositary notification C.N.1.2026.TREATIES-XXVI-5 of 6 February 2026). The withdrawal "
        "will take effect for Albania on 6 August 2026 in accordance with article 20 (3) of the Convention."))
    return pages


def _mark(page: str, name: str, number: str) -> str:
    return _replace_once(page, f"<td>{name}<br></td>", f"<td>{name} <SUP><A onclick='ShowNoteAll()' href='#{number}' "
                                                       f"class='noteIndex'>{number}</A> </SUP><br></td>")


def _note(page: str, number: str, text: str) -> str:
    last = page.rindex("</tr>", 0, page.index("</table>", page.index("dgNotesAll\"")))
    row = (f"</tr><tr><td><div class=\"divNotesAll\" style=\"text-align: justify\"><a name='{number}'>{number}</a>"
           f"<index></index>{text}<br><br></div></td>")
    return page[:last] + row + page[last:]


def write_pages(pages: dict[str, str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for mtdsg, page in pages.items():
        paths.append(folder / f"{PAGE_FILES[mtdsg]}.html")
        paths[-1].write_text(page, encoding="utf-8")
    return paths


def reference_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "reference", tmp_path / "reference")
    return tmp_path / "reference"


def snapshot(reference: Path) -> dict[str, bytes]:
    """Every file in the folder, temporary ones included: a failed refresh leaves no trace."""
    return {path.name: path.read_bytes() for path in reference.iterdir() if path.is_file()}


def table_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_saved_pages_give_exactly_the_reference_tables():
    pages = untc.read_pages(sorted(SAVED.glob("*.html.gz")), "2026-02-03")
    assert {page.as_at for page in pages} == {"2026-02-03"}
    tables = untc.tables_from_pages(pages, REPO_ROOT / "reference")
    for key, rows in tables.items():
        assert untc._csv(untc.COLUMNS[key], rows) == (REPO_ROOT / "reference" / untc.TABLE_FILES[key]).read_text(
            encoding="utf-8"), key


def test_committed_page_record_names_the_saved_pages():
    """reference/untc_pages.csv records each page's as-at date, retrieval date and checksum."""
    rows = {row["untc_mtdsg"]: row for row in table_rows(REPO_ROOT / "reference" / untc.RETRIEVAL_FILE)}
    assert set(rows) == set(INSTRUMENTS)
    for page in untc.read_pages(sorted(SAVED.glob("*.html.gz")), "2026-02-03"):
        assert (rows[page.mtdsg]["status_as_at"], rows[page.mtdsg]["sha256"]) == (page.as_at, page.sha256)


def test_changed_copy_gives_exactly_its_changes(tmp_path):
    reference = reference_copy(tmp_path)
    sources = tmp_path / "sources.ttl"
    shutil.copy(REPO_ROOT / "graph" / "sources.ttl", sources)
    before = {key: table_rows(reference / file) for key, file in untc.TABLE_FILES.items()}
    untc.refresh_untc(reference, write_pages(changed_pages(), tmp_path / "pages"), "2026-02-11", sources_file=sources)
    after = {key: table_rows(reference / file) for key, file in untc.TABLE_FILES.items()}

    def without_as_at(rows):
        return [{k: v for k, v in row.items() if k != "untc_status_as_at"} for row in rows]

    for key in after:
        assert {row["untc_status_as_at"] for row in after[key]} == {CHANGED_AS_AT}
    added = [row for row in without_as_at(after["ccm"]) if row not in without_as_at(before["ccm"])]
    removed = [row for row in without_as_at(before["ccm"]) if row not in without_as_at(after["ccm"])]
    assert [(r["untc_participant"], r["consent_type"], r["consent_date"], r["eif_for_state_derived_art17"],
             r["status_at_untc_date"]) for r in added if r["untc_participant"] == "Finland"] == [
        ("Finland", "accession", "2026-02-05", "2026-08-01", "state_party")]
    assert [(r["untc_participant"], r["untc_footnotes"]) for r in added if r["untc_participant"] != "Finland"] == [
        ("Austria", "9")]
    assert [r["untc_participant"] for r in removed] == ["Austria"]
    mbt_changed = [row for row in without_as_at(after["mbt"]) if row not in without_as_at(before["mbt"])]
    assert [(r["untc_participant"], r["status_at_untc_date"], r["withdrawal_notification_date"],
             r["withdrawal_effective_date"], r["untc_footnotes"]) for r in mbt_changed] == [
        ("Albania", "state_party_withdrawal_pending", "2026-02-06", "2026-08-06", "13")]
    assert len(after["mbt"]) == len(before["mbt"])
    for key in ("ccw", "ccw-protocols"):
        assert without_as_at(after[key]) == without_as_at(before[key])
    new_notes = [(r["untc_mtdsg"], r["note_no"], r["participants"])
                 for r in without_as_at(after["notes"]) if r not in without_as_at(before["notes"])]
    assert new_notes == [("XXVI-6", "9", "Austria"), ("XXVI-5", "13", "Albania")]
    assert len(after["notes"]) == len(before["notes"]) + 2
    # The as-at date is data on the source records, which keep their IRIs (and so their graphs').
    registry = Graph().parse(sources)
    assert {str(registry.value(registry.value(None, CMC.sourceKey, Literal(key)), CMC.asOf))
            for key in ("UNTC", "UNTC-ART17")} == {CHANGED_AS_AT}
    assert str(registry.value(registry.value(None, CMC.sourceKey, Literal("UNTC-COUNTS")), CMC.asOf)) == "2026-02-03"
    record = {row["untc_mtdsg"]: row for row in table_rows(reference / untc.RETRIEVAL_FILE)}
    assert {(row["status_as_at"], row["retrieved"]) for row in record.values()} == {(CHANGED_AS_AT, "2026-02-11")}


@pytest.mark.parametrize("change, expected", [
    (("STATUS AS AT : 03-02-2026", "STATUS: 03/02/2026"), "STATUS AS AT : DD-MM-YYYY"),
    (("_tblgrid\"", "_grid\""), "the participant table"),
    (("Provisional application(n)", "Provisional"), "unexpected column 'Provisional'"),
    (("<td>16 Jun\t 2009 <br></td>", "<td>June 16, 2009<br></td>"), "expected a date such as"),
    (("<td>Albania<br></td>", "<td>Albania<br></td><td></td>"), "has 5 cells, expected 4"),
    (("<td>Albania<br></td>", "<td>Atlantis<br></td>"), "'Atlantis' matches no ISO 3166-1 name"),
])
def test_changed_layout_fails_naming_what_was_expected_and_writes_nothing(tmp_path, change, expected):
    reference = reference_copy(tmp_path)
    before = snapshot(reference)
    pages = saved_pages()
    pages["XXVI-6"] = _replace_once(pages["XXVI-6"], *change)
    with pytest.raises(untc.LayoutError, match=expected.replace("(", r"\(").replace(")", r"\)")) as raised:
        untc.refresh_untc(reference, write_pages(pages, tmp_path / "pages"), "2026-02-11")
    assert "ccm.html" in str(raised.value)
    assert snapshot(reference) == before


def test_a_missing_page_writes_nothing(tmp_path):
    reference = reference_copy(tmp_path)
    before = snapshot(reference)
    files = write_pages(changed_pages(), tmp_path / "pages")
    with pytest.raises(untc.LayoutError, match="no status page for XXVI-2-d"):
        untc.refresh_untc(reference, [f for f in files if f.name != "ccw_p5.html"], "2026-02-11")
    assert snapshot(reference) == before


def test_downloads_the_pages_when_it_can_reach_them(tmp_path):
    """The download path, against a real HTTP server on loopback serving the changed pages."""
    folder = tmp_path / "site"
    for mtdsg, page in changed_pages().items():
        folder.mkdir(exist_ok=True)
        (folder / f"{mtdsg}.html").write_text(page, encoding="utf-8")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        template = f"http://127.0.0.1:{server.server_address[1]}/{{mtdsg}}.html"
        reference = reference_copy(tmp_path)
        pages, changed = untc.refresh_untc(reference, [], "2026-02-11", template)
        assert {page.url for page in pages} == {template.format(mtdsg=m) for m in INSTRUMENTS}
        assert {path.name for path in changed} == {"ccm_participants_untc.csv", "mbt_participants_untc.csv",
                                                   "ccw_participants_untc.csv", "ccw_protocols_participants_untc.csv",
                                                   "untc_footnotes_ccm_mbt_ccw.csv", untc.RETRIEVAL_FILE}
        with pytest.raises(untc.LayoutError, match="could not download"):
            untc.refresh_untc(reference, [], "2026-02-11", template.replace(".html", ".missing"))
    finally:
        server.shutdown()
        server.server_close()
