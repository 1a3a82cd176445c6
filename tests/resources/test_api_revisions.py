"""Revision names, and how promotion treats an API's revisions and releases."""

from __future__ import annotations

import pytest

from portico.arm.errors import ArmError
from portico.dr.promotion import parse_options
from portico.resources import kinds as K
from portico.resources.revisions import split


def test_revision_names() -> None:
    assert split("echo") == ("echo", None)
    assert split("echo;rev=12") == ("echo", "12")
    with pytest.raises(ArmError):
        split("echo;rev=1-2")
    target = K.resolve(["apis", "echo;rev=2", "releases", "r1"])
    assert target is not None and target.kind.kind == "release" and target.parent == "apis/echo;rev=2"


def test_excluded_api_takes_its_revisions_and_releases_along() -> None:
    opts = parse_options({"excludeApis": ["echo"]})
    assert not opts.from_backup("api", "", "echo;rev=2")
    assert not opts.from_backup("operation", "apis/echo;rev=2", "get")
    assert not opts.from_backup("release", "apis/echo", "r1")
    assert opts.from_backup("api", "", "echoes")
    assert opts.from_backup("api", "", "other;rev=2")
    assert not parse_options({"excludeTypes": ["apis"]}).from_backup("release", "apis/x", "r1")
