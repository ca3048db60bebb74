"""The ``xgrad-rewrite`` command line (thin IO around :mod:`xgrad_rewrite.codemod`)."""

from __future__ import annotations

import click

from xgrad_rewrite import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="xgrad-rewrite")
@click.argument("paths", nargs=-1, type=click.Path(allow_dash=True))
def main(paths: tuple[str, ...]) -> None:
    """Patch PyTorch training scripts to train with XGrad weight prediction."""
    raise click.UsageError("not implemented yet")
