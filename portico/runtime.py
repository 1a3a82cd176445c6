"""What one server process holds: settings, the database, identity, the job runner, the scheduler.

The composition root (`portico/server/app.py`) builds it; domain code receives it typed. The
component types are imported for type checking only, so that holding a `Runtime` does not make a
module depend on every component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portico.settings import Settings
from portico.store.db import Database

if TYPE_CHECKING:
    from portico.deployments.service import Deployments
    from portico.dr.scheduler import Scheduler
    from portico.identity.keys import SigningKeys
    from portico.identity.validation import TokenValidator
    from portico.jobs.runner import JobRunner
    from portico.resources.keyvault_refresh import KeyVaultRefresher
    from portico.server.routes.table import RouteTable


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: SigningKeys
    validator: TokenValidator
    # Started in the application's lifespan, before the first request is served.
    jobs: JobRunner = field(init=False)
    scheduler: Scheduler = field(init=False)
    deployments: Deployments = field(init=False)
    keyvault: KeyVaultRefresher = field(init=False)  # Key Vault secrets of certificates, named values
    routes: RouteTable = field(init=False)  # the management API's table: internal requests use it
