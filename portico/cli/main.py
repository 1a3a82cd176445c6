"""The `portico` command."""

from __future__ import annotations

from pathlib import Path

import typer

from portico.cli.dr import backup_cli, operation_cli, promote_cli, restore_cli
from portico.cli.drill import drill_cli
from portico.cli.gateway import register as register_gateway
from portico.cli.identity import app_cli, role_cli
from portico.cli.schedule import schedule_cli
from portico.cli.status import status_cli
from portico.cli.storage import storage_cli
from portico.cli.users import user_cli

app = typer.Typer(
    help="Portico: self-hosted API management with Azure-compatible management and fast, safe disaster recovery.",
    no_args_is_help=True,
)


@app.command()
def serve(
    data_dir: Path = typer.Option(
        None, envvar="PORTICO_DATA_DIR", help="Data directory (database, TLS, local storage)."
    ),
    host: str = typer.Option(None, envvar="PORTICO_HOST", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, envvar="PORTICO_PORT", help="HTTPS port (default 8443)."),
    database_url: str = typer.Option(
        None, envvar="PORTICO_DATABASE_URL", help="SQLAlchemy URL; default SQLite in the data directory."
    ),
    public_url: str = typer.Option(
        None, envvar="PORTICO_PUBLIC_URL", help="External base URL used in Location headers and tokens."
    ),
    tls_cert: Path = typer.Option(
        None, envvar="PORTICO_TLS_CERT", help="Server certificate (PEM); generated when absent."
    ),
    tls_key: Path = typer.Option(None, envvar="PORTICO_TLS_KEY", help="Server private key (PEM)."),
    storage_backend: str = typer.Option(
        None, envvar="PORTICO_STORAGE_BACKEND", help="local (default) or azure."
    ),
    blob_endpoint_template: str = typer.Option(
        None, envvar="PORTICO_BLOB_ENDPOINT_TEMPLATE", help="Azure Blob endpoint, {account} replaced."
    ),
) -> None:
    """Run the management API and identity provider over HTTPS."""
    from portico.server.serve import serve as run
    from portico.settings import settings_from_options

    run(
        settings_from_options(
            data_dir=data_dir,
            host=host,
            port=port,
            database_url=database_url,
            public_url=public_url,
            tls_cert=tls_cert,
            tls_key=tls_key,
            storage_backend=storage_backend,
            blob_endpoint_template=blob_endpoint_template,
        )
    )


app.add_typer(backup_cli, name="backup")
app.add_typer(restore_cli, name="restore")
app.add_typer(operation_cli, name="operation")
app.add_typer(promote_cli, name="promote")
app.add_typer(app_cli, name="app", help="App registrations of the built-in identity provider (server-side).")
app.add_typer(role_cli, name="role", help="Role assignments (server-side).")
app.add_typer(
    user_cli, name="user", help="People who sign in to the built-in identity provider (server-side)."
)
register_gateway(app)
app.add_typer(
    storage_cli,
    name="storage",
    help="Storage accounts and containers of the local backend (server-side).",
)
app.add_typer(schedule_cli, name="schedule")
app.add_typer(status_cli, name="status")
app.add_typer(drill_cli, name="drill")
