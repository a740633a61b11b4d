"""`striate store upgrade` — bring a store written by an older striate to this one's schema, in place."""

from __future__ import annotations

from typing import Optional

import typer

from striate.cli.common import JSON_OPTION, console, print_json

store_app = typer.Typer(help="Maintain a store: upgrade one written by an older striate.", no_args_is_help=True)


@store_app.command("upgrade")
def upgrade_command(
    store: Optional[str] = typer.Option(None, "--store", help="store folder or PostgreSQL URL "
                                        "(default ./striate-runs or $STRIATE_STORE)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Upgrade a store written by an older striate in place (an embedded store's database is backed up first)."""
    from dataclasses import asdict

    from striate.tracking.store import default_store_location
    from striate.tracking.store.upgrade import upgrade_store

    result = upgrade_store(store or default_store_location())
    if as_json:
        print_json({**asdict(result), "upgraded": result.upgraded})
    elif not result.upgraded:
        console.print(f"the store {result.location} is up to date (schema {result.to_version}): nothing to do",
                      highlight=False, markup=False)
    else:
        console.print(f"upgraded the store {result.location} from schema {result.from_version} to "
                      f"{result.to_version}: {result.runs} run(s), {result.chunks} metric chunk(s) now sharing "
                      f"{result.frames} frame(s)", highlight=False, markup=False)
        if result.backup:
            console.print(f"the schema-{result.from_version} database is kept in {result.backup} "
                          "(delete it once the upgraded store works for you)", highlight=False, markup=False)
