"""The `cmc-kg` command line: a thin shell over the build, query and server functions."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .console import checkout, progress, run_build
from .export import EXPORT_FORMATS
from .formats import RDF_FORMATS, RESULT_FORMATS
from .settings import command_options

__all__ = ["main"]




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """cmc-kg: build, query and serve the Cluster Munition Coalition knowledge graph."""


@main.command("build")
@command_options("build")
def build_command(settings):
    """Parse, validate (SHACL), reason (OWL 2 RL), check and write build/cmc-kg.nq atomically."""
    report = run_build(settings.paths(), write=True)
    click.echo(f"built {report.dump_file}: {report.asserted_triples} asserted + {report.inferred_triples} inferred "
               f"triples over the named graphs, {report.distinct_triples} distinct in the merged default graph "
               f"(a fact from two sources counts once there) in {sum(report.seconds_per_step.values()):.1f}s, "
               f"CPU {sum(report.cpu_seconds_per_step.values()):.1f}s "
               f"({', '.join(f'{k} {v:.1f}s' for k, v in report.seconds_per_step.items())})")


@main.command("validate")
@command_options("validate")
def validate_command(settings):
    """Run every build step except writing: parse, SHACL shapes, reasoning, consistency checks."""
    report = run_build(settings.paths(), write=False)
    click.echo(f"valid: {report.asserted_triples} asserted triples, {report.inferred_triples} inferred, "
               f"all shapes and checks pass")


@main.command("query")
@click.argument("query", required=False)
@click.option("-f", "--file", "query_file", type=click.File("r", encoding="utf-8"), help="Read the query from a file.")
@click.option("--format", "fmt", type=click.Choice(["table", *RESULT_FORMATS]), default="table",
              show_default=True, help="Output format for SELECT and ASK (CONSTRUCT always prints Turtle).")
@click.option("--asserted", is_flag=True, help="Leave the inferred triples out of the default graph.")
@command_options("query")
def query_command(settings, query, query_file, fmt, asserted):
    """Run a SPARQL query (a string, or --file) over the latest build. Project prefixes are predefined."""
    from .formats import NotAcceptable
    from .query import QueryError, format_rows, open_store, run_query

    if bool(query) == bool(query_file):
        raise click.UsageError("give the query either as an argument or with --file")
    text = query if query else query_file.read()
    try:
        result = run_query(open_store(settings.paths()), text, asserted_only=asserted)
        output = format_rows(result, fmt)
    except (QueryError, FileNotFoundError, NotAcceptable) as error:
        raise click.ClickException(str(error)) from None
    click.echo(output, nl=False)


# What issue 11 asks of the field's data, shown by `cmc-kg stats` next to what the graph holds.
MEMBER_TARGET = (150, 40)
MONITOR_YEARS_TARGET = 3


@main.command("stats")
@command_options("stats")
def stats_command(settings):
    """Triples per named graph, entities per class, and the field's figures next to the targets of issue 11."""
    from .query import internal_query, open_store, select

    try:
        store = open_store(settings.paths())
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    graphs = select(store, internal_query("graph-sizes"))
    click.echo("triples per graph")
    for row in graphs.rows:
        click.echo(f"  {int(row['n']):>7}  {row['g']}")
    classes = select(store, internal_query("stats-entities-per-class"), asserted_only=True)
    click.echo("entities per class (asserted)")
    for row in classes.rows:
        click.echo(f"  {int(row['n']):>7}  {row['class']}")
    regions = select(store, internal_query("stats-countries-per-region"))
    without = select(store, internal_query("stats-countries-without-region"))
    click.echo(f"countries with an M49 region: {sum(int(row['n']) for row in regions.rows)} "
               f"(without: {int(without.rows[0]['n'])})")
    for row in regions.rows:
        click.echo(f"  {int(row['n']):>7}  {row['code']} {row['name']}")
    members = select(store, internal_query("stats-members"), asserted_only=True).rows[0]
    click.echo(f"member organizations: {int(members['orgs'])} in {int(members['memberships'])} memberships, "
               f"from {int(members['countries'])} countries (where a source gives the country); "
               f"target (issue 11): {MEMBER_TARGET[0]} organizations from {MEMBER_TARGET[1]} countries")
    records = select(store, internal_query("stats-status-records"), asserted_only=True)
    monitor_years = {row["asOf"][:4] for row in records.rows if row["key"].startswith("MONITOR-") and row.get("asOf")}
    click.echo(f"states with a cluster-munition record, per report, and the lists the graph holds whole from it "
               f"({len(monitor_years)} Monitor report years; target: {MONITOR_YEARS_TARGET})")
    for row in records.rows:
        lists = f"whole:{row['whole']}" if row.get("whole") else "partial"
        click.echo(f"  {int(row['states']):>7}  {row.get('asOf') or 'undated':<10}  {lists:<38}  {row['key']}")


@main.command("export")
@click.option("--format", "fmt", required=True, type=click.Choice(sorted(EXPORT_FORMATS)),
              help=f"RDF ({', '.join(RDF_FORMATS)}), a CSV table (csv-…; csv-excel-… for spreadsheets) or graphml.")
@click.option("--inferred", is_flag=True, help="Include the OWL 2 RL inferences (RDF formats only).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of standard output.")
@command_options("export")
def export_command(settings, fmt, inferred, output):
    """Export the latest build for other tools: triple stores, Protégé, pandas, Gephi."""
    from .export import export
    from .query import open_store

    try:
        store = open_store(settings.paths())
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    try:
        data = export(store, fmt, inferred, Path(output) if output else None)
    except ValueError as refused:
        raise click.UsageError(str(refused)) from None
    if output:
        click.echo(f"wrote {output} ({len(data)} bytes)", err=True)
    else:
        click.echo(data.decode("utf-8"), nl=False)


@main.command("push")
@click.option("--endpoint", required=True, help="Graph Store Protocol URL (Oxigraph: http://host:7878/store; "
                                                  "Virtuoso: http://host:8890/sparql-graph-crud-auth).")
@click.option("--query-endpoint", default=None, help="Query URL of the same store, to delete graphs of an earlier "
                                                     "upload (derived for Oxigraph's /store).")
@click.option("--update-endpoint", default=None, help="SPARQL update URL of the same store, to switch to the new "
                                                      "build at once (derived for Oxigraph's /store; Virtuoso: "
                                                      "http://host:8890/sparql-auth); without it graphs are replaced "
                                                      "one by one.")
@command_options("push")
def push_command(settings, endpoint, query_endpoint, update_endpoint):
    """Upload the latest build to an existing SPARQL engine, named graphs kept, replacing the previous upload.

    Credentials, when the engine asks for them (HTTP Basic or Digest), come from the variables CMC_KG_PUSH_USER and
    CMC_KG_PUSH_PASSWORD or from the netrc file ($NETRC or ~/.netrc) entry of the endpoint's host, never from the
    command line."""
    from .remote import Credentials, RemoteError, push

    paths = settings.paths()
    if not paths.dump_file.exists():
        raise click.ClickException(f"{paths.dump_file} does not exist: run `cmc-kg build` first")
    started = time.perf_counter()
    try:
        uploaded = push(paths.dump_file, endpoint, query_endpoint, update_endpoint, Credentials.find(endpoint),
                        progress=progress)
    except (RemoteError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"pushed {len(uploaded) - 1} named graphs and the merged default graph "
               f"({uploaded['default']} triples) to {endpoint} in {time.perf_counter() - started:.1f} s")


@main.command("import-tables")
@command_options("import-tables")
def import_tables_command(settings):
    """Regenerate graph/ Turtle from the sourced tables in reference/ (UNTC participants, ISO 3166-1)."""
    from .tables import import_tables

    paths = checkout(settings.paths(), "import-tables")
    for path, count in import_tables(paths.reference_dir, paths.graph_dir).items():
        click.echo(f"  {count:>7} triples  {path}")


@main.group("refresh")
def refresh():
    """Bring a source up to date from its publisher and rebuild."""


@refresh.command("untc")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--retrieved", default=None, help="The date the pages were retrieved (YYYY-MM-DD; default: today, UTC).")
@click.option("--url-template", default=None, help="Where to download each page from ({mtdsg} is the page's number; "
                                                    "default: the UN Treaty Collection).")
@click.option("--no-build", is_flag=True, help="Update the tables and graph/ but do not rebuild.")
@command_options("refresh untc")
def refresh_untc_command(settings, files, retrieved, url_template, no_build):
    """Read the UN Treaty Collection status pages (downloaded, or saved copies given as FILES: .html or .html.gz)
    of the CCM, the Mine Ban Treaty, the CCW and its protocols into reference/, regenerate graph/ and rebuild."""
    import datetime as dt

    from .tables import SOURCES_FILE, TableError, import_tables
    from .untc import PAGE_URL, LayoutError, refresh_untc

    paths = checkout(settings.paths(), "refresh untc")
    retrieved = retrieved or dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        dt.date.fromisoformat(retrieved)
        pages, changed = refresh_untc(paths.reference_dir, list(files), retrieved, url_template or PAGE_URL,
                                      progress=progress, sources_file=paths.graph_dir / SOURCES_FILE)
    except (LayoutError, ValueError, OSError) as error:
        raise click.ClickException(f"refresh failed, no table changed: {error}") from None
    for page in pages:
        progress(f"{page.mtdsg}: {len(page.participants)} participants, {len(page.notes)} end-notes, "
                  f"status as at {page.as_at} ({page.source})")
    for path in changed:
        progress(f"updated {path}")
    try:
        import_tables(paths.reference_dir, paths.graph_dir)
    except TableError as error:
        raise click.ClickException(f"the new tables are written but graph/ could not be regenerated: {error}") from None
    progress(f"regenerated graph/ from reference/ ({len(changed)} file(s) changed)")
    if not no_build:
        run_build(paths, write=True)
        progress(f"built {paths.dump_file}")


@main.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown changelog here (default: standard output).")
@click.option("--rdf", "rdf_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the changes as RDF (Turtle, cmc:Change) here.")
@command_options("diff")
def diff_command(settings, old, new, markdown_file, rdf_file):
    """What changed from OLD to NEW (each a build folder, a release folder or an N-Quads dump): states that
    became signatories or parties, withdrawals, dates that changed, organizations, memberships, claims, notes."""
    from .diff import diff, load_snapshot, to_markdown, to_rdf

    try:
        before, after = load_snapshot(old), load_snapshot(new)
    except (OSError, ValueError, KeyError) as error:
        raise click.ClickException(str(error)) from None
    changes = diff(before, after)
    text = to_markdown(changes, before.version, after.version)
    if markdown_file:
        markdown_file.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    if rdf_file:
        to_rdf(changes, before.version, after.version).serialize(rdf_file, format="turtle", encoding="utf-8")
    progress(f"{len(changes)} changes from {before.version} to {after.version}")


@main.command("release")
@click.argument("version")
@click.option("--since", type=click.Path(exists=True, path_type=Path), default=None,
              help="The release (folder) or build to list the changes from (default: the latest in releases/).")
@click.option("--first", is_flag=True, help="The first release: compare with nothing.")
@click.option("--releases-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where releases are kept (default: releases/ in the checkout).")
@command_options("release")
def release_command(settings, version, since, first, releases_dir):
    """Make release VERSION of the latest build: release.json (version, date, each source's as-at date, checksums)
    and the changes since the previous release (CHANGES.md, changes.ttl) beside the dump, for /dumps/ and the entity
    pages, and a copy under releases/VERSION/."""
    from .diff import RELEASE_FILE
    from .release import ReleaseError, latest_release, make_release

    paths = settings.paths()
    releases_dir = releases_dir or paths.root / "releases"
    if since is None and not first:
        since = latest_release(releases_dir)
    try:
        release = make_release(paths, version, since, releases_dir)
    except (ReleaseError, OSError) as error:
        raise click.ClickException(f"no release made: {error}") from None
    dated = ", ".join(f"{key} {date}" for key, date in release["sources_as_at"].items() if key.startswith("UNTC"))
    click.echo(f"release {version} of {paths.dump_file} ({release['files']['cmc-kg.nq']['sha256'][:12]}…): "
               f"{paths.build_dir / RELEASE_FILE}, kept in {releases_dir / version}; sources as at: {dated}"
               + (f"; {release['changes']} changes since {release['since']}" if release["since"] else ""))


@main.command("serve")
@command_options("serve")
def serve_command(settings):
    """Serve the latest build: SPARQL endpoint, query page and entity pages (building first if there is none)."""
    from .server import create_app
    from .server.connections import serve

    paths = settings.paths()
    if not settings.store and not paths.dump_file.exists():
        run_build(paths, write=True)
    app = create_app(settings)
    local = f"http://{settings.host}:{settings.port}"
    click.echo(f"cmc-kg serving on {local}/ (query page: {local}/query, explore: {local}/explore, "
               f"SPARQL endpoint: {local}/sparql)"
               + (f", published as {settings.public_url}/" if settings.base_url else ""), err=True)
    serve(app, settings)  # waitress, with a deadline per request and a cap per client address (server/connections.py)


from .link.cli import enrich, link  # noqa: E402  (`cmc-kg link wikidata`, `cmc-kg enrich wikidata`: cmc_kg/link/)

main.add_command(link)
main.add_command(enrich)


if __name__ == "__main__":
    main()
