"""`portico storage ...`: storage accounts and containers of the local backend (server-side).

The local backend keeps storage accounts under ``<data dir>/storage``. An account's access key is
printed once, when the account is created (or its key renewed); only a salted hash is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from portico.dr.storage import LocalAccounts, StorageError

storage_cli = typer.Typer(
    help="Storage accounts and containers of the local storage backend (server-side).", no_args_is_help=True
)
account_cli = typer.Typer(help="Create, list and delete local storage accounts.", no_args_is_help=True)
container_cli = typer.Typer(
    help="Create, list and delete blob containers of a local account.", no_args_is_help=True
)
storage_cli.add_typer(account_cli, name="account")
storage_cli.add_typer(container_cli, name="container")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="PORTICO_DATA_DIR",
        help="Portico data directory (storage lives in <data-dir>/storage).",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_DATA_DIR = Path("./data")


def _accounts(data_dir: Path) -> LocalAccounts:
    return LocalAccounts(data_dir / "storage")


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]Error:[/red] {escape(message)}")
    return typer.Exit(2)


def _print_key(account: str, key: str, verb: str) -> None:
    err.print(f"Storage account {account!r} {verb}. Its access key follows; it is shown only this once:")
    print(key)  # alone on stdout, for scripts: KEY=$(portico storage account create NAME)


@account_cli.command("create")
def account_create(
    name: Annotated[str, typer.Argument(help="Account name: 3-24 lowercase letters and digits.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create a storage account and print its access key (once)."""
    try:
        key = _accounts(data_dir).create_account(name)
    except StorageError as e:
        raise _fail(e.message) from None
    _print_key(name, key, "created")


@account_cli.command("renew-key")
def account_renew_key(
    name: Annotated[str, typer.Argument(help="Account name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    yes: Yes = False,
) -> None:
    """Replace the account's access key (the old key stops working) and print the new one."""
    accounts = _accounts(data_dir)
    try:
        if not accounts.account_exists(name):
            raise _fail(f"storage account {name!r} does not exist")
        if not yes:
            typer.confirm(
                f"Renew the key of storage account {name!r}? The current key stops working.", abort=True
            )
        key = accounts.regenerate_key(name)
    except StorageError as e:
        raise _fail(e.message) from None
    _print_key(name, key, "has a new key")


@account_cli.command("list")
def account_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """List the storage accounts."""
    try:
        accounts = _accounts(data_dir).list_accounts()
    except StorageError as e:
        raise _fail(e.message) from None
    if as_json:
        print(
            json.dumps(
                [
                    {"name": a.name, "created": a.created.isoformat(), "containers": a.containers}
                    for a in accounts
                ],
                indent=2,
            )
        )
        return
    if not accounts:
        err.print("No storage accounts. Create one with: portico storage account create NAME")
        return
    table = Table("Account", "Created", "Containers")
    for a in accounts:
        table.add_row(a.name, a.created.strftime("%Y-%m-%d %H:%M:%S UTC"), ", ".join(a.containers) or "-")
    out.print(table)


@account_cli.command("delete")
def account_delete(
    name: Annotated[str, typer.Argument(help="Account name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    yes: Yes = False,
) -> None:
    """Delete a storage account with all its containers and blobs."""
    accounts = _accounts(data_dir)
    try:
        if not accounts.account_exists(name):
            raise _fail(f"storage account {name!r} does not exist")
        if not yes:
            typer.confirm(f"Delete storage account {name!r} and every blob in it?", abort=True)
        accounts.delete_account(name)
    except StorageError as e:
        raise _fail(e.message) from None
    err.print(f"Storage account {name!r} deleted.")


@container_cli.command("create")
def container_create(
    account: Annotated[str, typer.Argument(help="Account name.")],
    container: Annotated[
        str, typer.Argument(help="Container name: 3-63 lowercase letters, digits and hyphens.")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create a blob container (backups need an existing container)."""
    try:
        _accounts(data_dir).create_container(account, container)
    except StorageError as e:
        raise _fail(e.message) from None
    err.print(f"Container {container!r} created in storage account {account!r}.")


@container_cli.command("list")
def container_list(
    account: Annotated[str, typer.Argument(help="Account name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """List the containers of a storage account."""
    try:
        containers = _accounts(data_dir).list_containers(account)
    except StorageError as e:
        raise _fail(e.message) from None
    if as_json:
        print(json.dumps(containers))
        return
    if not containers:
        err.print(f"Storage account {account!r} has no containers.")
    for name in containers:
        print(name)


@container_cli.command("delete")
def container_delete(
    account: Annotated[str, typer.Argument(help="Account name.")],
    container: Annotated[str, typer.Argument(help="Container name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    force: Annotated[bool, typer.Option("--force", help="Delete even if the container holds blobs.")] = False,
    yes: Yes = False,
) -> None:
    """Delete a container (refused when it holds blobs, unless --force)."""
    accounts = _accounts(data_dir)
    try:
        if force and not yes:
            typer.confirm(f"Delete container {container!r} and every blob in it?", abort=True)
        accounts.delete_container(account, container, force=force)
    except StorageError as e:
        raise _fail(e.message) from None
    err.print(f"Container {container!r} deleted from storage account {account!r}.")
