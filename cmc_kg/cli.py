"""The `cmc-kg` command line: a thin shell over the build, query and server functions."""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from pathlib import Path

import click

from .export import EXPORT_FORMATS
from .settings import Settings

__all__ = ["main"]


def _progress(message: str) -> None:
    """Step lines on stderr, with elapsed time, so a long build shows where it is."""
    click.echo(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", err=True)


_STARTED = time.perf_counter()


def _settings(build_dir: str | None) -> Settings:
    return Settings(build_dir=Path(build_dir)) if build_dir else Settings()


build_dir_option = click.option("--build-dir", type=click.Path(file_okay=False), default=None,
                                help="Where the build output lives (default: build/ in the checkout).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """cmc-kg: build, query and serve the Cluster Munition Coalition knowledge graph."""


def _run_build(settings: Settings, write: bool):
    from .build import BuildError, build

    try:
        return build(settings, progress=_progress, write=write)
    except BuildError as error:
        click.echo(f"build failed: {error}", err=True)
        if write and settings.dump_file.exists():
            click.echo(f"the last good build is unchanged: {settings.dump_file}", err=True)
        sys.exit(1)


@main.command("build")
@build_dir_option
def build_command(build_dir):
    """Parse, validate (SHACL), reason (OWL 2 RL), check and write build/cmc-kg.nq atomically."""
    report = _run_build(_settings(build_dir), write=True)
    click.echo(f"built {report.dump_file}: {report.asserted_triples} asserted + {report.inferred_triples} inferred "
               f"triples over the named graphs, {report.distinct_triples} distinct in the merged default graph "
               f"(a fact from two sources counts once there) in {sum(report.seconds_per_step.values()):.1f}s "
               f"({', '.join(f'{k} {v:.1f}s' for k, v in report.seconds_per_step.items())})")


@main.command("validate")
def validate_command():
    """Run every build step except writing: parse, SHACL shapes, reasoning, consistency checks."""
    report = _run_build(Settings(), write=False)
    click.echo(f"valid: {report.asserted_triples} asserted triples, {report.inferred_triples} inferred, "
               f"all shapes and checks pass")


@main.command("query")
@click.argument("query", required=False)
@click.option("-f", "--file", "query_file", type=click.File("r", encoding="utf-8"), help="Read the query from a file.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "tsv", "json", "xml"]), default="table",
              show_default=True, help="Output format for SELECT and ASK (CONSTRUCT always prints Turtle).")
@click.option("--asserted", is_flag=True, help="Leave the inferred triples out of the default graph.")
@build_dir_option
def query_command(query, query_file, fmt, asserted, build_dir):
    """Run a SPARQL query (a string, or --file) over the latest build. Project prefixes are predefined."""
    from .formats import NotAcceptable
    from .query import QueryError, format_rows, open_store, run_query

    if bool(query) == bool(query_file):
        raise click.UsageError("give the query either as an argument or with --file")
    text = query if query else query_file.read()
    try:
        result = run_query(open_store(_settings(build_dir)), text, asserted_only=asserted)
        output = format_rows(result, fmt)
    except (QueryError, FileNotFoundError, NotAcceptable) as error:
        raise click.ClickException(str(error)) from None
    click.echo(output, nl=False)


@main.command("stats")
@build_dir_option
def stats_command(build_dir):
    """Triples per named graph and entities per class in the latest build."""
    from .query import open_store, select

    try:
        store = open_store(_settings(build_dir))
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    graphs = select(store, "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g ORDER BY ?g")
    click.echo("triples per graph")
    for row in graphs.rows:
        click.echo(f"  {int(row['n']):>7}  {row['g']}")
    classes = select(store, "SELECT ?class (COUNT(DISTINCT ?s) AS ?n) WHERE { ?s a ?class "
                            "FILTER(STRSTARTS(STR(?s), STR(id:))) } GROUP BY ?class "
                            "ORDER BY DESC(?n) ?class", asserted_only=True)
    click.echo("entities per class (asserted)")
    for row in classes.rows:
        click.echo(f"  {int(row['n']):>7}  {row['class']}")
    regions = select(store, "SELECT ?code ?name (COUNT(DISTINCT ?c) AS ?n) WHERE { ?c a cmc:Country ; "
                            "cmc:inM49Area/skos:broader* ?r . ?r a cmc:M49Region ; skos:notation ?code ; "
                            "rdfs:label ?name } GROUP BY ?code ?name ORDER BY ?name")
    without = select(store, "SELECT (COUNT(DISTINCT ?c) AS ?n) WHERE { ?c a cmc:Country "
                            "FILTER NOT EXISTS { ?c cmc:inM49Area ?a } }")
    click.echo(f"countries with an M49 region: {sum(int(row['n']) for row in regions.rows)} "
               f"(without: {int(without.rows[0]['n'])})")
    for row in regions.rows:
        click.echo(f"  {int(row['n']):>7}  {row['code']} {row['name']}")
    members = select(store, "SELECT (COUNT(DISTINCT ?m) AS ?orgs) (COUNT(DISTINCT ?c) AS ?countries) "
                            "(COUNT(DISTINCT ?x) AS ?memberships) WHERE { ?x a org:Membership ; org:member ?m . "
                            "FILTER NOT EXISTS { ?m a foaf:Person } OPTIONAL { ?m cmc:country ?c } }",
                     asserted_only=True).rows[0]
    click.echo(f"member organizations: {int(members['orgs'])} in {int(members['memberships'])} memberships, "
               f"from {int(members['countries'])} countries (where a source gives the country)")


@main.command("export")
@click.option("--format", "fmt", required=True, type=click.Choice(sorted(EXPORT_FORMATS)),
              help="RDF (turtle, ntriples, nquads, trig, rdfxml, jsonld), a CSV table (csv-…) or graphml.")
@click.option("--inferred", is_flag=True, help="Include the OWL 2 RL inferences (RDF formats only).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of standard output.")
@build_dir_option
def export_command(fmt, inferred, output, build_dir):
    """Export the latest build for other tools: triple stores, Protégé, pandas, Gephi."""
    from .export import export
    from .query import open_store

    try:
        store = open_store(_settings(build_dir))
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
@build_dir_option
def push_command(endpoint, query_endpoint, update_endpoint, build_dir):
    """Upload the latest build to an existing SPARQL engine, named graphs kept, replacing the previous upload.

    Credentials, when the engine asks for them (HTTP Basic or Digest), come from the variables CMC_PUSH_USER and
    CMC_PUSH_PASSWORD or from the netrc file ($NETRC or ~/.netrc) entry of the endpoint's host, never from the
    command line."""
    from .remote import Credentials, RemoteError, push

    settings = _settings(build_dir)
    if not settings.dump_file.exists():
        raise click.ClickException(f"{settings.dump_file} does not exist: run `cmc-kg build` first")
    started = time.perf_counter()
    try:
        uploaded = push(settings.dump_file, endpoint, query_endpoint, update_endpoint, Credentials.find(endpoint),
                        progress=_progress)
    except (RemoteError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"pushed {len(uploaded) - 1} named graphs and the merged default graph "
               f"({uploaded['default']} triples) to {endpoint} in {time.perf_counter() - started:.1f} s")


@main.command("import-tables")
def import_tables_command():
    """Regenerate graph/ Turtle from the sourced tables in reference/ (UNTC participants, ISO 3166-1)."""
    from .tables import import_tables

    settings = Settings()
    for path, count in import_tables(settings.reference_dir, settings.graph_dir).items():
        click.echo(f"  {count:>7} triples  {path}")


def _setting_help(name: str) -> str:
    from .settings import ServerConfig

    return next(f.metadata["help"] for f in fields(ServerConfig) if f.name == name)


@main.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="A TOML file of settings (overridden by CMC_* environment variables and by flags).")
@click.option("--host", default=None, help=_setting_help("host"))
@click.option("--port", default=None, type=int, help=_setting_help("port"))
@click.option("--base-url", default=None, help=_setting_help("base_url"))
@click.option("--threads", default=None, type=int, help=_setting_help("threads"))
@click.option("--workers", default=None, type=int, help=_setting_help("workers"))
@click.option("--query-timeout", default=None, type=float, help=_setting_help("query_timeout"))
@click.option("--max-rows", default=None, type=int, help=_setting_help("max_rows"))
@click.option("--max-request-bytes", default=None, type=int, help=_setting_help("max_request_bytes"))
@click.option("--max-answer-bytes", default=None, type=int, help=_setting_help("max_answer_bytes"))
@click.option("--max-nesting", default=None, type=int, help=_setting_help("max_nesting"))
@click.option("--service-allowlist", default=None, help=_setting_help("service_allowlist"))
@click.option("--quick-lane", default=None, type=float, help=_setting_help("quick_lane"))
@click.option("--worker-memory", default=None, type=int, help=_setting_help("worker_memory"))
@click.option("--reload-interval", default=None, type=float, help=_setting_help("reload_interval"))
@click.option("--cache-entries", default=None, type=int, help=_setting_help("cache_entries"))
@click.option("--cache-bytes", default=None, type=int, help=_setting_help("cache_bytes"))
@click.option("--store", default=None, help=_setting_help("store"))
@click.option("--fair-share/--no-fair-share", default=None, help=_setting_help("fair_share"))
@click.option("--client-queries", default=None, type=int, help=_setting_help("client_queries"))
@click.option("--heavy-seconds", default=None, type=float, help=_setting_help("heavy_seconds"))
@click.option("--client-budget", default=None, type=float, help=_setting_help("client_budget"))
@click.option("--unthrottled", default=None, help=_setting_help("unthrottled"))
@click.option("--trusted-proxy", default=None, help=_setting_help("trusted_proxy"))
@click.option("--connection-limit", default=None, type=int, help=_setting_help("connection_limit"))
@click.option("--client-connections", default=None, type=int, help=_setting_help("client_connections"))
@click.option("--request-read-timeout", default=None, type=float, help=_setting_help("request_read_timeout"))
@build_dir_option
def serve_command(config_file, **flags):
    """Serve the latest build: SPARQL endpoint, query page and entity pages (building first if there is none)."""
    from server import create_app
    from server.connections import serve

    from .settings import ServerConfig

    try:
        config = ServerConfig.load(Path(config_file) if config_file else None, **flags)
    except ValueError as bad:
        raise click.UsageError(str(bad)) from None
    settings = config.paths()
    if not config.store and not settings.dump_file.exists():
        _run_build(settings, write=True)
    app = create_app(config)
    local = f"http://{config.host}:{config.port}"
    click.echo(f"cmc-kg serving on {local}/ (query page: {local}/query, explore: {local}/explore, "
               f"SPARQL endpoint: {local}/sparql)"
               + (f", published as {config.public_url}/" if config.base_url else ""), err=True)
    serve(app, config)  # waitress, with a deadline per request and a cap per client address (server/connections.py)


from .link.cli import enrich, link  # noqa: E402  (`cmc-kg link wikidata`, `cmc-kg enrich wikidata`: cmc_kg/link/)

main.add_command(link)
main.add_command(enrich)


if __name__ == "__main__":
    main()
