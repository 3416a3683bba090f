"""`cmc-kg link …` and `cmc-kg enrich …`: the command line of the Wikidata linker and enrichment."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from ..console import checkout, progress, run_build
from ..settings import command_options

__all__ = ["link", "enrich"]


def _paths(settings, command: str):
    paths = checkout(settings.paths(), command)
    return paths, paths.graph_dir / "wikidata-links"


def _client(config):
    from .client import WikidataClient, default_user_agent

    client = WikidataClient(config, progress=progress)
    if not config.wikidata_user_agent:
        progress(f"User-Agent: {default_user_agent()}")
    return client


@click.group("link")
def link():
    """Link the graph's entities to other datasets (Wikidata)."""


@link.command("wikidata")
@command_options("link wikidata")
@click.option("--offline", is_flag=True, help="Fetch nothing: use the committed link set and snapshot.")
@click.option("--curation", type=click.Path(dir_okay=False), default=None,
              help="Accept/reject decisions (default: graph/wikidata-links/curation.tsv).")
@click.option("--links", "links_file", type=click.Path(dir_okay=False), default=None,
              help="The generated link set (default: graph/wikidata-links/links.ttl).")
@click.option("--review", type=click.Path(dir_okay=False), default=None,
              help="Where to write the candidates with their scores (default: build/wikidata-review.tsv).")
@click.option("--strict", is_flag=True, help="Exit with status 1 when the endpoint contradicts a linked QID.")
def link_wikidata(settings, offline, curation, links_file, review, strict):
    """Find and score Wikidata candidates, report contradicted links, write the links the curation accepts.

    States are matched by ISO 3166-1 alpha-3 (P298) and alpha-2 (P297) codes; organizations, people,
    treaties and cities by English label and type. Candidates go to the review file; only the rows of the
    curation file with decision `accept` become links (graph/wikidata-links/links.ttl).
    """
    from .client import EndpointError, EndpointUnreachable
    from .curation import CurationError, read_candidates, write_links
    from .wikidata import find_candidates, local_entities, write_review

    paths, folder = _paths(settings, "link wikidata")
    curation_path = Path(curation) if curation else folder / "curation.tsv"
    links_path = Path(links_file) if links_file else folder / "links.ttl"
    review_path = Path(review) if review else paths.build_dir / "wikidata-review.tsv"
    contradicted = False
    if offline:
        progress("offline: nothing is fetched; the committed link set is used")
    else:
        from ..query import open_store

        if not paths.dump_file.exists():
            run_build(paths, write=True)
        entities = local_entities(open_store(paths))
        client = _client(settings)
        progress(f"querying {settings.wikidata_endpoint} for {len(entities)} entities")
        try:
            report = find_candidates(client, entities, read_candidates(folder / "candidates.tsv"), progress)
        except EndpointUnreachable as unreachable:
            progress(f"{unreachable}: working offline with the committed link set")
        except EndpointError as failed:
            raise click.ClickException(str(failed)) from None
        else:
            write_review(review_path, report)
            click.echo(f"review: {len(report.rows)} candidates for {len({r.entity.name for r in report.rows})} of "
                       f"{report.entities} entities in {review_path} ({report.requests} requests)")
            if report.unconfirmed:
                click.echo(f"unconfirmed: {len(report.unconfirmed)} linked entities the endpoint has nothing on")
            click.echo(f"contradictions: {len(report.contradictions)}")
            for contradiction in report.contradictions:
                click.echo(f"  contradiction: {contradiction}")
            contradicted = bool(report.contradictions)
    try:
        before = links_path.read_bytes() if links_path.exists() else b""
        decisions = write_links(curation_path, links_path, paths.graph_dir / "sources.ttl")
    except (CurationError, OSError) as bad:
        raise click.ClickException(str(bad)) from None
    accepted = [d for d in decisions if d.accepted]
    states = sum(1 for d in accepted if d.entity.startswith("country:"))
    changed = "changed: run `cmc-kg build`" if links_path.read_bytes() != before else "unchanged"
    click.echo(f"links: {len(accepted)} accepted ({states} states, {len(accepted) - states} others), "
               f"{len(decisions) - len(accepted)} rejected, from {curation_path} -> {links_path} ({changed})")
    if strict and contradicted:
        sys.exit(1)


@link.command("import-reference")
@command_options("link import-reference")
@click.option("--curation", type=click.Path(dir_okay=False), default=None,
              help="The curation file to update (default: graph/wikidata-links/curation.tsv).")
def link_import_reference(settings, curation):
    """Turn the sourced tables in reference/ into curation decisions and unverified candidates.

    States: the QID OWID-CR gives each ISO 3166-1 entry. Organizations, people and cities: the QID of
    reference/entities_wikidata.csv where a source shows it (verified_in_source) and the graph has the entity.
    Pairings seen only in unresolved sources go to graph/wikidata-links/candidates.tsv and are never linked.
    Existing decisions keep their dates; rejections stand; decisions about other entities are kept.
    """
    from .curation import (CurationError, merge_decisions, read_curation, reference_decisions, write_candidates,
                           write_curation, write_links)

    paths, folder = _paths(settings, "link import-reference")
    curation_path = Path(curation) if curation else folder / "curation.tsv"
    try:
        existing = read_curation(curation_path) if curation_path.exists() else []
        decisions, candidates, skipped = reference_decisions(paths.reference_dir, paths.graph_dir,
                                                             date.today().isoformat(), existing)
        write_curation(curation_path, merge_decisions(existing, decisions))
        write_candidates(folder / "candidates.tsv", candidates, CANDIDATES_HEADER)
        written = write_links(curation_path, folder / "links.ttl", paths.graph_dir / "sources.ttl")
    except CurationError as bad:
        raise click.ClickException(str(bad)) from None
    click.echo(f"curation: {len(written)} decisions in {curation_path}; "
               f"{len(candidates)} unverified candidates in {folder / 'candidates.tsv'}")
    for reason in skipped:
        click.echo(f"  skipped: {reason}")


CANDIDATES_HEADER = (
    "# Pairings of graph entities with Wikidata items that reference/entities_wikidata.csv saw only in sources\n"
    "# whose repository or path could not be identified. NOT links: nothing here is asserted in the graph.\n"
    "# Written by `cmc-kg link import-reference`; check a pairing in a citable source before accepting it\n"
    "# in curation.tsv.\n")


@click.group("enrich")
def enrich():
    """Add facts from other datasets about the linked entities (Wikidata)."""


@enrich.command("wikidata")
@command_options("enrich wikidata")
@click.option("--offline", is_flag=True, help="Fetch nothing: use the committed link set and snapshot.")
@click.option("--curation", type=click.Path(dir_okay=False), default=None,
              help="Whose accepted links to enrich (default: graph/wikidata-links/curation.tsv).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="The snapshot to write (default: graph/wikidata-enrichment/facts.ttl).")
def enrich_wikidata(settings, offline, curation, output):
    """Pull the declared Wikidata facts (cmc_kg/link/enrich.py, FACTS) of the linked items into a snapshot.

    ISO codes, population with its point in time, capital, coordinates, inception, official website and logo,
    written as Wikidata writes them into graph/wikidata-enrichment/facts.ttl with the retrieval time.
    """
    from .client import EndpointError, EndpointUnreachable
    from .curation import CurationError, read_curation
    from .enrich import ENRICHMENT_FOLDER, fetch_facts, render_facts, snapshot_info

    paths = settings.paths()
    output_path = Path(output) if output else paths.graph_dir / ENRICHMENT_FOLDER / "facts.ttl"
    if offline:
        click.echo(f"offline: {snapshot_info(output_path)}")
        return
    paths, folder = _paths(settings, "enrich wikidata")
    try:
        qids = sorted({d.qid for d in read_curation(Path(curation) if curation else folder / "curation.tsv")
                       if d.accepted})
    except CurationError as bad:
        raise click.ClickException(str(bad)) from None
    client = _client(settings)
    progress(f"querying {settings.wikidata_endpoint} for the facts of {len(qids)} linked items")
    try:
        facts = fetch_facts(client, qids, progress)
    except EndpointUnreachable as unreachable:  # nothing was written: a failure, whatever snapshot exists
        raise click.ClickException(f"{unreachable}; nothing written; {snapshot_info(output_path)}") from None
    except EndpointError as failed:
        raise click.ClickException(str(failed)) from None
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(render_facts(facts, settings.wikidata_endpoint), encoding="utf-8")
    statements = sum(len(pairs) for pairs in facts.statements.values())
    click.echo(f"enrichment: {statements} statements about {len(facts.statements)} subjects in {output_path} "
               f"({client.requests} requests); run `cmc-kg build`")
