"""`portico user ...`: people of the built-in identity provider (server-side, on the database)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from portico.cli.identity import (
    DatabaseUrl,
    DataDir,
    JsonOut,
    _fail,
    _print_json,
    _run,
    out,
    print_items,
    print_record,
)

if TYPE_CHECKING:
    from portico.identity import users as users_mod
    from portico.settings import Settings
    from portico.store.db import Database

user_cli = typer.Typer(
    help="Manage people who sign in to the built-in identity provider (az login, MSAL).", no_args_is_help=True
)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input (first line) instead of a prompt."
    ),
]


def _password(from_stdin: bool) -> str:
    # Never a command-line argument: it would show in `ps` and shell history.
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@user_cli.command("create")
def user_create(
    upn: Annotated[str, typer.Option("--upn", help="Sign-in name, e.g. alice@contoso.com.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    password_stdin: PasswordStdin = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user; prints the object id to use with `portico role assign --principal`."""
    from portico.identity import users as users_mod

    password = _password(password_stdin)

    async def work(db: Database, settings: Settings) -> dict[str, Any]:
        try:
            user = await users_mod.create_user(db, upn, name, password)
        except ValueError as e:
            raise _fail(str(e)) from None
        return {"tenant_id": settings.tenant_id, **user.as_dict()}

    result = _run(data_dir, database_url, work)
    if as_json:
        _print_json(result)
        return
    print_record(
        "User",
        [
            ("Object id", result["oid"]),
            ("User name", result["upn"]),
            ("Display name", result["display_name"]),
            ("Tenant id", result["tenant_id"]),
        ],
    )


@user_cli.command("list")
def user_list(as_json: JsonOut = False, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List users (password hashes are never shown)."""
    from portico.identity import users as users_mod

    async def work(db: Database, _: Settings) -> list[users_mod.User]:
        return await users_mod.list_users(db)

    print_items(
        _run(data_dir, database_url, work),
        as_json,
        "Users",
        ("Object id", "User name", "Display name", "Created"),
        lambda u: (u.oid, u.upn, u.display_name, u.created_at.isoformat(timespec="seconds")),
    )


async def _lookup(db: Database, who: str) -> users_mod.User:
    from portico.identity import users as users_mod

    user = await users_mod.find_user(db, who)
    if user is None:
        raise _fail(f"No user with object id or name '{who}'.")
    return user


@user_cli.command("delete")
def user_delete(
    who: Annotated[str, typer.Argument(help="Object id or user name.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a user, their role assignments and their sessions (refresh tokens)."""
    from portico.identity import users as users_mod

    async def work(db: Database, _: Settings) -> str:
        user = await _lookup(db, who)
        await users_mod.delete_user(db, user.oid)
        return f"Deleted user {user.upn} ({user.oid}), their role assignments and sessions."

    out.print(_run(data_dir, database_url, work), highlight=False, markup=False)


@user_cli.command("reset-password")
def user_reset_password(
    who: Annotated[str, typer.Argument(help="Object id or user name.")],
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a new password, unlock the account and end the user's sessions (refresh tokens)."""
    from portico.identity import users as users_mod

    password = _password(password_stdin)

    async def work(db: Database, _: Settings) -> str:
        user = await _lookup(db, who)
        try:
            await users_mod.reset_password(db, user.oid, password)
        except ValueError as e:
            raise _fail(str(e)) from None
        return f"Password of {user.upn} reset; their sessions were ended."

    out.print(_run(data_dir, database_url, work), highlight=False, markup=False)
