"""What every `cmc-kg` command does the same way: progress lines, a build that stops the command when it fails, and
the refusal to rewrite the data installed with cmc-kg.

Shared by cmc_kg/cli.py and cmc_kg/link/cli.py, so that neither imports the other's private functions.
"""

from __future__ import annotations

import sys
import time

import click

from .settings import Paths

__all__ = ["checkout", "progress", "run_build"]

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Step lines on stderr, with elapsed time, so a long command shows where it is."""
    click.echo(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", err=True)


def run_build(paths: Paths, write: bool):
    """Build with progress lines; on failure say so, say the last good build is unchanged, and exit 1."""
    from .build import BuildError, build

    try:
        return build(paths, progress=progress, write=write)
    except BuildError as error:
        click.echo(f"build failed: {error}", err=True)
        if write and paths.dump_file.exists():
            click.echo(f"the last good build is unchanged: {paths.dump_file}", err=True)
        sys.exit(1)


def checkout(paths: Paths, command: str) -> Paths:
    """The paths of a command that rewrites files of graph/, which the copy installed with cmc-kg must not get."""
    if paths.installed:
        raise click.ClickException(f"`cmc-kg {command}` rewrites files of graph/; the data installed with cmc-kg is "
                                   f"not a checkout: point --root (or CMC_KG_ROOT) at a checkout of cmc-kg")
    return paths
