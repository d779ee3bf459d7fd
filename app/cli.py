"""The ``dealcoach`` command."""

from __future__ import annotations

import click

from app.config import exit_on_invalid_settings


@click.group()
@click.version_option(package_name="dealcoach")
def main() -> None:
    """dealcoach: deal coaching inside the CRM."""


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (creates the SQLite file if needed)."""
    from app.db import upgrade_database

    settings = exit_on_invalid_settings()
    upgrade_database(settings, revision)
    click.echo(f"database at {revision}: {settings.safe_database_url}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert the migrations down to REVISION (``base`` removes every table)."""
    from app.db import downgrade_database

    settings = exit_on_invalid_settings()
    downgrade_database(settings, revision)
    click.echo(f"database at {revision}: {settings.safe_database_url}")
