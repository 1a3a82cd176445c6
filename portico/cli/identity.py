"""`portico app ...` and `portico role ...`: server-side admin commands working on the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portico.identity.roles import role_names

if TYPE_CHECKING:
    from portico.identity import apps as apps_mod
    from portico.identity import rbac
    from portico.settings import Settings
    from portico.store.db import Database

app_cli = typer.Typer(
    help="Manage app registrations (client id + secret) of the built-in identity provider.",
    no_args_is_help=True,
)
role_cli = typer.Typer(
    help="Manage role assignments (built-in Azure roles at ARM scopes).", no_args_is_help=True
)

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class Listed(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


L = TypeVar("L", bound=Listed)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="PORTICO_DATA_DIR", help="Portico data directory.", show_default=False),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PORTICO_DATABASE_URL",
        help="SQLAlchemy async database URL.",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(data_dir: Path | None, database_url: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database_url"] = database_url
    from portico.settings import Settings

    return Settings(**overrides)


def _run(
    data_dir: Path | None, database_url: str | None, work: Callable[[Database, Settings], Awaitable[T]]
) -> T:
    settings = _settings(data_dir, database_url)
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the folder itself

    async def main() -> T:
        from portico.store.db import Database

        db = Database(settings.resolved_database_url)
        try:
            await db.start()
            return await work(db, settings)
        finally:
            await db.close()

    return asyncio.run(main())


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]Error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(2)


def _cells(*values: str) -> list[Text]:
    # Text, not str: rich would read "[...]" in names and ids as markup.
    return [Text(v) for v in values]


def _print_json(data: Any) -> None:
    # Plain print: rich would wrap long lines and colour the output.
    print(json.dumps(data, indent=2))


def print_record(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """One created thing as a two-column table: label, value."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(*_cells(label, value))
    out.print(table)


def print_items(
    items: Sequence[L],
    as_json: bool,
    title: str,
    columns: Sequence[str],
    cells: Callable[[L], Sequence[str]],
    *,
    fold: bool = False,
) -> None:
    """A listing: each item's `as_dict()` as a JSON array, or one table row per item."""
    if as_json:
        _print_json([i.as_dict() for i in items])
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold" if fold else "ellipsis")
    for i in items:
        table.add_row(*_cells(*cells(i)))
    out.print(table)


# --- apps ---------------------------------------------------------------------------------------


@app_cli.command("create")
def app_create(
    name: Annotated[str, typer.Option("--name", help="Display name of the app.")],
    role: Annotated[str | None, typer.Option("--role", help="Also assign this built-in role.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Scope of the role assignment.")] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A public (native) client: no secret; people sign in through it.")
    ] = False,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri", help="Redirect URI of a public client (repeatable), e.g. http://localhost."
        ),
    ] = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register an app and print its client id and secret (the secret is shown only this once)."""
    from portico.identity import apps as apps_mod
    from portico.identity import rbac

    # --- public clients (people sign-in) ---
    if public or redirect_uri:
        _create_public(name, list(redirect_uri or []), public, role, as_json, data_dir, database_url)
        return
    # --- end public clients ---
    if (role is None) != (scope is None):
        raise _fail("--role and --scope must be given together.")
    if role is not None and scope is not None:
        try:
            rbac.validate_assignment("x", role, scope)  # reject a bad role/scope before creating anything
        except ValueError as e:
            raise _fail(str(e)) from None

    async def work(db: Database, settings: Settings) -> dict[str, Any]:
        try:
            client_id, secret = await apps_mod.create_app(db, name)
        except ValueError as e:
            raise _fail(str(e)) from None
        result: dict[str, Any] = {
            "tenant_id": settings.tenant_id,
            "client_id": client_id,
            "client_secret": secret,
            "display_name": name.strip(),
        }
        if role is not None and scope is not None:
            try:
                a = await rbac.assign_role(db, client_id, role, scope)
            except BaseException:
                await apps_mod.delete_app(db, client_id)  # no half-created app
                raise
            result["role_assignment"] = a.as_dict()
        return result

    result = _run(data_dir, database_url, work)
    if as_json:
        _print_json(result)
        return
    rows = [
        ("Tenant id", result["tenant_id"]),
        ("Client id", result["client_id"]),
        ("Client secret", result["client_secret"]),
        ("Display name", result["display_name"]),
    ]
    if "role_assignment" in result:
        ra = result["role_assignment"]
        rows.append(("Role", f"{ra['role']} at {ra['scope']}"))
    print_record("App registration", rows)
    err.print("[yellow]Store the client secret now: it cannot be shown again.[/yellow]")


def _create_public(
    name: str,
    redirect_uris: list[str],
    public: bool,
    role: str | None,
    as_json: bool,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    from portico.identity import public_clients

    if not public:
        raise _fail("--redirect-uri is for public clients: add --public.")
    if role is not None:
        raise _fail("A public client acts for the person signed in: assign roles to users, not to it.")

    async def work(db: Database, settings: Settings) -> dict[str, Any]:
        try:
            client_id = await public_clients.create_public_app(db, name, redirect_uris)
        except ValueError as e:
            raise _fail(str(e)) from None
        return {
            "tenant_id": settings.tenant_id,
            "client_id": client_id,
            "display_name": name.strip(),
            "public_client": True,
            "redirect_uris": redirect_uris,
        }

    result = _run(data_dir, database_url, work)
    if as_json:
        _print_json(result)
        return
    print_record(
        "Public client registration",
        [
            ("Tenant id", result["tenant_id"]),
            ("Client id", result["client_id"]),
            ("Display name", result["display_name"]),
            ("Redirect URIs", " ".join(redirect_uris)),
        ],
    )


@app_cli.command("list")
def app_list(as_json: JsonOut = False, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List app registrations (secrets are never shown)."""
    from portico.identity import apps as apps_mod

    async def work(db: Database, _: Settings) -> list[apps_mod.AppInfo]:
        return await apps_mod.list_apps(db)

    print_items(
        _run(data_dir, database_url, work),
        as_json,
        "App registrations",
        ("Client id", "Display name", "Created"),
        lambda a: (a.client_id, a.display_name, a.created_at.isoformat(timespec="seconds")),
    )


@app_cli.command("delete")
def app_delete(
    client_id: Annotated[str, typer.Argument(help="Client id of the app.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete an app and all its role assignments."""
    from portico.identity import apps as apps_mod

    async def work(db: Database, _: Settings) -> bool:
        return await apps_mod.delete_app(db, client_id)

    if not _run(data_dir, database_url, work):
        raise _fail(f"No app with client id '{client_id}'.")
    out.print(f"Deleted app {client_id} and its role assignments.", highlight=False, markup=False)


# --- roles --------------------------------------------------------------------------------------


Issuer = Annotated[
    str,
    typer.Option(
        "--issuer",
        help="Issuer of the principal: 'local' (Portico's own apps, the default) or the issuer URL of a "
        "trusted outside issuer, exactly as its tokens' 'iss' claim spells it.",
    ),
]


def _issuer(issuer: str, settings: Settings) -> str:
    """The stored form of `--issuer`: Portico's own issuer URL means 'local'."""
    from portico.identity import rbac
    from portico.identity.validation import LOCAL_ISSUER

    iss = issuer.strip()
    return LOCAL_ISSUER if iss == settings.issuer else rbac.validate_issuer(iss)


def _warn_if_untrusted(issuer: str, settings: Settings) -> None:
    from portico.identity.validation import LOCAL_ISSUER, parse_trusted_issuers

    if issuer == LOCAL_ISSUER:
        return
    try:
        trusted = parse_trusted_issuers(settings.trusted_issuers)
    except ValueError:
        trusted = {}
    if issuer not in trusted:
        err.print(
            f"[yellow]Warning:[/yellow] {escape(issuer)} is not in PORTICO_TRUSTED_ISSUERS here; the "
            "assignment takes effect only on servers that trust this issuer.",
            highlight=False,
        )


@role_cli.command("assign")
def role_assign(
    principal: Annotated[
        str,
        typer.Option(
            "--principal", help="Client id of an app, or the oid (else sub) of an outside principal."
        ),
    ],
    role: Annotated[str, typer.Option("--role", help=f"Built-in role: {', '.join(role_names())}.")],
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            help="'/', /subscriptions/{s}, .../resourceGroups/{rg} or .../providers/Microsoft.ApiManagement/service/{name}.",
        ),
    ],
    issuer: Issuer = "local",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Assign a built-in role to a principal (of an issuer) at a scope."""
    from portico.identity import rbac

    settings = _settings(data_dir, database_url)
    try:
        iss = _issuer(issuer, settings)
        rbac.validate_assignment(principal, role, scope, iss)
    except ValueError as e:
        raise _fail(str(e)) from None
    _warn_if_untrusted(iss, settings)

    async def work(db: Database, _: Settings) -> rbac.Assignment:
        return await rbac.assign_role(db, principal, role, scope, issuer=iss)

    a = _run(data_dir, database_url, work)
    if as_json:
        _print_json(a.as_dict())
        return
    out.print(
        f"Assignment {a.id}: {a.role} for {a.principal_id} (issuer {a.issuer}) at {a.scope}",
        highlight=False,
        markup=False,
    )


@role_cli.command("list")
def role_list(
    principal: Annotated[
        str | None, typer.Option("--principal", help="Only this principal's assignments.")
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option("--issuer", help="Only assignments of principals of this issuer ('local' or a URL)."),
    ] = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List role assignments with the issuer of each principal ('local': Portico's own apps)."""
    from portico.identity import rbac

    iss: str | None = None
    if issuer is not None:
        try:
            iss = _issuer(issuer, _settings(data_dir, database_url))
        except ValueError as e:
            raise _fail(str(e)) from None

    async def work(db: Database, _: Settings) -> list[rbac.Assignment]:
        return await rbac.list_assignments(db, principal, issuer=iss)

    print_items(
        _run(data_dir, database_url, work),
        as_json,
        "Role assignments",
        ("Assignment id", "Principal", "Issuer", "Role", "Scope"),
        lambda a: (a.id, a.principal_id, a.issuer, a.role, a.scope),
        fold=True,
    )


@role_cli.command("delete")
def role_delete(
    assignment_id: Annotated[str, typer.Argument(help="Id of the role assignment.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a role assignment."""
    from portico.identity import rbac

    async def work(db: Database, _: Settings) -> bool:
        return await rbac.delete_assignment(db, assignment_id)

    if not _run(data_dir, database_url, work):
        raise _fail(f"No role assignment with id '{assignment_id}'.")
    out.print(f"Deleted role assignment {assignment_id}.", highlight=False, markup=False)
