"""What every `cmc-kg` command prints the same way: progress lines, and a build that stops the command when it fails.

Shared by cmc_kg/cli.py and cmc_kg/link/cli.py, so that neither imports the other's private functions.
"""

from __future__ import annotations

import sys
import time

import click

from .settings import Settings

__all__ = ["progress", "run_build"]

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Step lines on stderr, with elapsed time, so a long command shows where it is."""
    click.echo(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", err=True)


def run_build(settings: Settings, write: bool):
    """Build with progress lines; on failure say so, say the last good build is unchanged, and exit 1."""
    from .build import BuildError, build

    try:
        return build(settings, progress=progress, write=write)
    except BuildError as error:
        click.echo(f"build failed: {error}", err=True)
        if write and settings.dump_file.exists():
            click.echo(f"the last good build is unchanged: {settings.dump_file}", err=True)
        sys.exit(1)
