"""Every stored kind has a public type name in the promotion options (else `includeTypes` could
never carry it and `excludeTypes` could never leave it out)."""

from __future__ import annotations

from portico.dr.promotion import TYPE_KINDS, parse_options
from portico.resources import kinds as K


def _all_kinds() -> set[str]:
    out: set[str] = set()
    todo = list(K.TOP_LEVEL.values())
    while todo:
        k = todo.pop()
        out.add(k.kind)
        todo.extend(k.children.values())
    return out


def test_every_kind_has_a_promotion_type() -> None:
    assert _all_kinds() - set().union(*TYPE_KINDS.values()) == set()


def test_resolvers_are_a_type_of_their_own() -> None:
    opts = parse_options({"excludeTypes": ["resolvers"]})
    assert not opts.from_backup("resolver", "apis/gql", "users")
    assert opts.from_backup("api", "", "gql")
