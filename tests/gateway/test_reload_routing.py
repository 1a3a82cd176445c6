"""Operations compiled for a (re)load: the URL regex is compiled at the first match, which must
answer exactly as the regex compiled up front did (portico/gateway/routing.py)."""

from __future__ import annotations

import gc
import re
import weakref

import pytest

from portico.gateway.routing import compile_operation

CASES = [
    ("/items/{id}", "/items/42", {"id": "42"}),
    ("/items/{id}", "/ITEMS/42/", {"id": "42"}),
    ("/items/{id}", "/items/42/x", None),
    ("/files/{*rest}", "/files/a/b/c", {"rest": "a/b/c"}),
    ("/v1/*", "/v1/anything/here", {}),
    ("/v1/*", "/v1", {}),
    ("/{a}.{b}", "/report.json", {"a": "report", "b": "json"}),
    ("/search?q={q}", "/search", None),
    ("/", "/", {}),
    ("/", "/x", None),
    ("users/{id}/orders", "/users/7/orders", {"id": "7"}),
]


@pytest.mark.parametrize(("template", "path", "expected"), CASES)
def test_deferred_regex_matches_like_the_compiled_one(template: str, path: str, expected: object) -> None:
    op = compile_operation("op", {"method": "GET", "urlTemplate": template})
    assert not isinstance(op.regex, re.Pattern)  # nothing compiled while loading
    eager = re.compile(op.regex.pattern, re.IGNORECASE | re.DOTALL)
    query = {"q": "x"} if "?" in template else None
    got = op.match(path, query)
    if "?" in template:
        assert op.match(path, None) is None and got == {"q": "x"}
    else:
        assert got == expected
    assert isinstance(op.regex, re.Pattern) and op.regex.pattern == eager.pattern  # compiled in its place
    assert op.match(path, query) == got
    assert (eager.match(path) is not None) == (got is not None)


def test_deferred_regex_does_not_keep_its_operation_alive() -> None:
    op = compile_operation("op", {"method": "GET", "urlTemplate": "/a/{b}"})
    ref = weakref.ref(op)
    deferred = op.regex
    del op
    gc.collect()
    assert ref() is None
    assert deferred.match("/a/1") is not None  # still usable by whoever held it
