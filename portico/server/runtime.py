"""What one server process holds: settings, the database, identity, the job runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.settings import Settings
from portico.store.db import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: Any = None  # portico.identity.keys.SigningKeys
    validator: Any = None  # portico.identity.validation.TokenValidator
    jobs: Any = None  # portico.jobs.runner.JobRunner
    extras: dict[str, Any] = field(default_factory=dict)
