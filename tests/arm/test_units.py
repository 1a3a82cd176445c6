"""The ARM protocol helpers on their own: api-versions, error bodies, paging and the $filter parser."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from portico.arm.errors import ArmError, invalid_field
from portico.arm.paging import DEFAULT_PAGE, MAX_PAGE, next_link, parse_filter, parse_page
from portico.arm.versions import RESOURCES_API_VERSIONS, SUPPORTED_API_VERSIONS, check_api_version

# --- api-version ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_API_VERSIONS)
def test_supported_versions(version: str) -> None:
    assert check_api_version(version) == version
    assert check_api_version(f" {version} ") == version


@pytest.mark.parametrize("value", [None, ""])
def test_missing_version(value: str | None) -> None:
    with pytest.raises(ArmError) as info:
        check_api_version(value)
    assert (info.value.status, info.value.code) == (400, "MissingApiVersionParameter")
    assert "api-version" in info.value.message


@pytest.mark.parametrize("value", ["2024-05-02", "2023-03-01-preview", "latest", "2024-05-01;x", "x" * 500])
def test_unsupported_version(value: str) -> None:
    with pytest.raises(ArmError) as info:
        check_api_version(value)
    assert (info.value.status, info.value.code) == (400, "InvalidApiVersionParameter")
    assert "2024-05-01" in info.value.message and len(info.value.message) < 400


def test_resource_group_versions_are_microsoft_resources_ones() -> None:
    assert check_api_version("2022-09-01", resource_groups=True) == "2022-09-01"
    assert "2021-04-01" in RESOURCES_API_VERSIONS
    with pytest.raises(ArmError):
        check_api_version("2022-09-01")  # not an API Management version
    with pytest.raises(ArmError):
        check_api_version("2024-05-01", resource_groups=True)


# --- error bodies --------------------------------------------------------------------------------


def test_error_body_shape() -> None:
    body = ArmError(409, "Conflict", "It conflicts.").body()
    assert body == {"error": {"code": "Conflict", "message": "It conflicts.", "details": []}}
    field = invalid_field("properties.path", "is required").body()["error"]
    assert field["code"] == "ValidationError" and field["target"] == "properties.path"
    assert field["message"] == "properties.path: is required"
    assert field["details"] == [
        {"code": "ValidationError", "target": "properties.path", "message": "is required"}
    ]


# --- paging --------------------------------------------------------------------------------------


def test_page_defaults_and_bounds() -> None:
    p = parse_page(None, None, None)
    assert (p.top, p.skip, p.filter) == (DEFAULT_PAGE, 0, None)
    assert parse_page("5", "7", "").top == 5 and parse_page("5", "7", "").skip == 7
    assert parse_page(str(MAX_PAGE * 10), None, None).top == MAX_PAGE
    for top, skip in (("0", None), ("-1", None), ("x", None), (None, "-1"), (None, "1.5"), ("1e3", None)):
        with pytest.raises(ArmError) as info:
            parse_page(top, skip, None)
        assert info.value.status == 400


def test_next_link_is_absolute_and_keeps_the_query() -> None:
    page = parse_page("10", "20", "name eq 'a b'")
    link = next_link(
        "https://h:1/subscriptions/s/x/users",
        {"api-version": "2024-05-01", "$top": "10", "$skip": "20", "$filter": "name eq 'a b'"},
        page,
        10,
        True,
    )
    assert link is not None and link.startswith("https://h:1/subscriptions/s/x/users?")
    assert (
        "api-version=2024-05-01" in link
        and "%24skip=30" in link
        and "%24top=10" in link
        and "%24filter=name+eq+%27a+b%27" in link
    )
    assert next_link("https://h", {}, page, 3, False) is None


# --- $filter -------------------------------------------------------------------------------------

ITEMS: list[dict[str, Any]] = [
    {
        "name": "echo-api",
        "properties": {
            "displayName": "Echo API",
            "path": "echo",
            "subscriptionRequired": True,
            "apiRevision": "1",
            "count": 3,
        },
    },
    {
        "name": "orders",
        "properties": {
            "displayName": "Orders (v2)",
            "path": "orders/v2",
            "subscriptionRequired": False,
            "count": 10,
        },
    },
    {"name": "o'brien", "properties": {"displayName": "O'Brien's API", "path": "ob", "count": None}},
]


def names(expr: str) -> list[str]:
    f = parse_filter(expr)
    return [i["name"] for i in ITEMS if f.predicate(i)]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("name eq 'orders'", ["orders"]),
        ("name eq 'ORDERS'", ["orders"]),  # case-insensitive, as API Management compares
        ("name ne 'orders'", ["echo-api", "o'brien"]),
        ("displayName eq 'Echo API'", ["echo-api"]),
        ("properties/displayName eq 'echo api'", ["echo-api"]),
        ("contains(displayName,'api')", ["echo-api", "o'brien"]),
        ("contains(name, 'RDER')", ["orders"]),
        ("startswith(name,'e')", ["echo-api"]),
        ("endswith(path,'v2')", ["orders"]),
        ("name eq 'o''brien'", ["o'brien"]),
        ("contains(displayName,'''s')", ["o'brien"]),
        ("subscriptionRequired eq true", ["echo-api"]),
        ("subscriptionRequired eq false", ["orders"]),
        ("count gt 3", ["orders"]),
        ("count ge 3", ["echo-api", "orders"]),
        ("count lt 10 and count ne null", ["echo-api"]),
        ("count eq null", ["o'brien"]),
        ("startswith(name,'e') or startswith(name,'o')", ["echo-api", "orders", "o'brien"]),
        ("not startswith(name,'e')", ["orders", "o'brien"]),
        ("(name eq 'orders' or name eq 'echo-api') and contains(path,'v')", ["orders"]),
        ("name eq 'orders' AND path eq 'orders/v2'", ["orders"]),
        ("missing eq 'x'", []),
        ("apiRevision eq '1'", ["echo-api"]),
    ],
)
def test_filter_semantics(expr: str, expected: list[str]) -> None:
    assert names(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "name eq",
        "name",
        "eq 'x'",
        "name eq 'unterminated",
        "name like 'x'",
        "name eq 'x' extra",
        "contains(name)",
        "contains(name,'x'",
        "contains('x', name)",
        "startswith(name, 5)",
        "(name eq 'x'",
        "name eq 'x')",
        "name eq 'x' and",
        "not",
        "name eq $x",
        "name eq 'x' ; drop table",
        "x" * 2001,
        "()",
        ",",
    ],
)
def test_filter_errors_are_400_invalid_filter(expr: str) -> None:
    with pytest.raises(ArmError) as info:
        parse_filter(expr)
    assert (info.value.status, info.value.code, info.value.target) == (400, "InvalidFilter", "$filter")


def test_filter_parser_never_raises_anything_but_arm_errors() -> None:
    rng = random.Random(1234)
    atoms = [
        "name",
        "displayName",
        "eq",
        "ne",
        "gt",
        "and",
        "or",
        "not",
        "(",
        ")",
        ",",
        "'a'",
        "'",
        "''",
        "1",
        "-2.5",
        "true",
        "null",
        "contains",
        "startswith",
        "endswith",
        "properties/x",
        " ",
        "é",
        "\x00",
        "%",
        "$",
    ]
    for _ in range(3000):
        if rng.random() < 0.5:
            text = " ".join(rng.choice(atoms) for _ in range(rng.randint(1, 9)))
        else:
            text = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 30)))
        try:
            f = parse_filter(text)
        except ArmError as exc:
            assert exc.status == 400
            continue
        for item in ITEMS:
            f.predicate(item)  # evaluating a parsed filter never raises either
