"""The `vigil` command."""

import click


@click.group()
def cli() -> None:
    """Vigil from the terminal."""
