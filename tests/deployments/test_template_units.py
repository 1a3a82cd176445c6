"""The template language without a server: functions, parameters, loops, ordering and errors."""

from __future__ import annotations

from typing import Any

import pytest

from portico.deployments.errors import TemplateError
from portico.deployments.expressions import ExpressionError, parse
from portico.deployments.template import Deployment, ResourceGroupInfo, evaluate_expression

GROUP = ResourceGroupInfo("sub-1", "rg-1", "westeurope", {"env": "test"}, "portico")
APIM = "Microsoft.ApiManagement/service"


def deployment(template: dict[str, Any] | None = None, **params: Any) -> Deployment:
    return Deployment(
        template or {"parameters": {}},
        {k: {"value": v} for k, v in params.items()},
        name="dep",
        group=GROUP,
        environment={"name": "Portico", "resourceManager": "https://localhost:8443/"},
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("[concat('a', 'b', 1)]", "ab1"),
        ("[concat(createArray(1), createArray(2, 3))]", [1, 2, 3]),
        ("[format('{0}-{1:D3}-{{x}}', 'a', 7)]", "a-007-{x}"),
        ("[toLower('AbC')]", "abc"),
        ("[toUpper('abc')]", "ABC"),
        ("[replace('a-b-c', '-', '.')]", "a.b.c"),
        ("[split('a,b;c', createArray(',', ';'))]", ["a", "b", "c"]),
        ("[string(createObject('a', true()))]", '{"a":true}'),
        ("[string(true())]", "True"),
        ("[int('42')]", 42),
        ("[bool('TRUE')]", True),
        ("[json('{\"a\": [1, null]}').a[1]]", None),
        ("[if(equals(1, 2), 'x', 'y')]", "y"),
        ("[if(true(), 'x', parameters('missing'))]", "x"),  # the branch not taken is not evaluated
        ("[and(true(), not(false()), or(false(), true()))]", True),
        ("[empty('')]", True),
        ("[length(createArray(1, 2))]", 2),
        ("[contains(createObject('Key', 1), 'key')]", True),
        ("[union(createObject('a', 1), createObject('b', 2))]", {"a": 1, "b": 2}),
        ("[union(createArray(1, 2), createArray(2, 3))]", [1, 2, 3]),
        ("[first(createArray('x', 'y'))]", "x"),
        ("[last('xyz')]", "z"),
        ("[base64('hi')]", "aGk="),
        ("[base64ToString('aGk=')]", "hi"),
        ("[add(div(7, 2), mod(-7, 2))]", 2),
        ("[take(skip(range(0, 5), 1), 2)]", [1, 2]),
        ("[coalesce(null(), 'z')]", "z"),
        ("[substring('abcdef', 1, 3)]", "bcd"),
        ("[padLeft('7', 3, '0')]", "007"),
        ("[resourceGroup().location]", "westeurope"),
        ("[resourceGroup().tags.env]", "test"),
        ("[subscription().subscriptionId]", "sub-1"),
        ("[environment().resourceManager]", "https://localhost:8443/"),
        (
            "[resourceId('Microsoft.ApiManagement/service/apis', 'svc', 'echo')]",
            "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ApiManagement/service/svc/apis/echo",
        ),
        (
            "[resourceId('other-rg', 'Microsoft.ApiManagement/service', 'svc')]",
            "/subscriptions/sub-1/resourceGroups/other-rg/providers/Microsoft.ApiManagement/service/svc",
        ),
        (
            "[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'g')]",
            "/subscriptions/sub-1/providers/Microsoft.Resources/resourceGroups/g",
        ),
        ("[[not an expression]", "[not an expression]"),
        ("plain", "plain"),
    ],
)
def test_functions(expression: str, expected: Any) -> None:
    d = deployment()
    value = (
        evaluate_expression(expression, d)
        if expression.startswith("[") and not expression.startswith("[[")
        else None
    )
    if (value is None and not expression.startswith("[")) or expression.startswith("[["):
        from portico.deployments.functions import evaluate_string

        value = evaluate_string(expression, d)
    assert value == expected


def test_unique_string_and_guid_are_deterministic() -> None:
    d = deployment()
    a = evaluate_expression("[uniqueString(resourceGroup().id)]", d)
    assert a == evaluate_expression("[uniqueString(resourceGroup().id)]", d)
    assert len(a) == 13 and a.isalnum() and a.islower()
    assert a != evaluate_expression("[uniqueString('other')]", d)
    g = evaluate_expression("[guid('a', 'b')]", d)
    assert g == evaluate_expression("[guid('a', 'b')]", d) and len(g) == 36


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[concat('a'", "string literal"),
        ("[concat('a',)]", "unexpected"),
        ("[a.b(]", "empty"),
        ("[]", "empty"),
    ],
)
def test_malformed_expressions(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        parse(text)


def test_parameters_are_checked() -> None:
    spec = {
        "parameters": {
            "sku": {"type": "string", "allowedValues": ["Developer", "Premium"], "defaultValue": "Developer"},
            "count": {"type": "int", "minValue": 1, "maxValue": 3, "defaultValue": 1},
            "name": {"type": "string", "minLength": 3},
            "secret": {"type": "securestring", "defaultValue": ""},
            "stamp": {"type": "string", "defaultValue": "[utcNow('yyyy')]"},
        }
    }
    d = deployment(spec, name="abc", count="2")  # ints written as strings are converted, as ARM does
    assert (
        d.parameters["count"] == 2 and d.parameters["sku"] == "Developer" and len(d.parameters["stamp"]) == 4
    )
    for bad, message in (
        ({"name": "ab"}, "length"),
        ({"name": "abc", "count": 4}, "at most 3"),
        ({"name": "abc", "sku": "Basic"}, "allowed values"),
        ({"name": "abc", "count": True}, "not of type"),
        ({}, "'name' is not provided"),
        ({"name": "abc", "other": 1}, "not present in the template"),
    ):
        with pytest.raises(TemplateError, match=message):
            deployment(spec, **bad)
    with pytest.raises(ExpressionError, match="utcNow"):
        evaluate_expression("[utcNow()]", deployment(spec, name="abc"))


def test_copy_loops_conditions_children_and_order() -> None:
    template = {
        "parameters": {"n": {"type": "int"}},
        "variables": {
            "copy": [
                {
                    "name": "paths",
                    "count": "[parameters('n')]",
                    "input": "[format('p{0}', copyIndex('paths'))]",
                }
            ]
        },
        "resources": [
            {
                "type": f"{APIM}/apis/operations",
                "apiVersion": "2024-05-01",
                "name": "[format('svc/api/op{0}', copyIndex())]",
                "copy": {"name": "ops", "count": "[parameters('n')]", "mode": "Serial", "batchSize": 1},
                "dependsOn": ["[resourceId('Microsoft.ApiManagement/service/apis', 'svc', 'api')]"],
            },
            {
                "type": APIM,
                "apiVersion": "2024-05-01",
                "name": "svc",
                "resources": [
                    {
                        "type": "apis",
                        "apiVersion": "2024-05-01",
                        "name": "api",
                        "properties": {"path": "[variables('paths')[0]]"},
                    },
                    {
                        "type": "tags",
                        "apiVersion": "2024-05-01",
                        "name": "never",
                        "condition": "[equals(1, 2)]",
                    },
                ],
            },
        ],
    }
    d = deployment(template, n=3)
    plan = d.plan()
    names = [p.name for p in plan]
    assert names == ["svc", "svc/api", "svc/api/op0", "svc/api/op1", "svc/api/op2"]
    serial = {p.name: {x.split("/")[-1] for x in p.depends_on} for p in plan}
    assert "op0" in serial["svc/api/op1"] and "op1" in serial["svc/api/op2"]
    assert d.variable("paths") == ["p0", "p1", "p2"]


def test_cycles_unknown_functions_and_bad_names_are_template_errors() -> None:
    cyc = {
        "resources": [
            {"type": f"{APIM}/tags", "apiVersion": "v", "name": "s/a", "dependsOn": ["s/b"]},
            {"type": f"{APIM}/tags", "apiVersion": "v", "name": "s/b", "dependsOn": ["s/a"]},
        ]
    }
    with pytest.raises(TemplateError, match="Circular"):
        deployment(cyc).plan()
    with pytest.raises(TemplateError) as info:
        deployment({"resources": [{"type": APIM, "apiVersion": "v", "name": "[nope()]"}]}).plan()
    assert info.value.target == "resources[0].name" and "nope" in info.value.message
    with pytest.raises(TemplateError, match="segment"):
        deployment({"resources": [{"type": f"{APIM}/apis", "apiVersion": "v", "name": "onlyone"}]}).plan()
    with pytest.raises(TemplateError, match="not defined in the template"):
        deployment(
            {"resources": [{"type": APIM, "apiVersion": "v", "name": "s", "dependsOn": ["ghost"]}]}
        ).plan()
    with pytest.raises(TemplateError, match="User-defined"):
        deployment({"functions": [{"namespace": "x"}], "resources": []}).plan()


def test_dependencies_on_skipped_resources_and_empty_loops_are_dropped() -> None:
    template = {
        "resources": [
            {"type": f"{APIM}/tags", "apiVersion": "v", "name": "svc/off", "condition": "[equals(1, 2)]"},
            {
                "type": f"{APIM}/tags",
                "apiVersion": "v",
                "name": "[format('svc/t{0}', copyIndex())]",
                "copy": {"name": "none", "count": 0},
            },
            {"type": f"{APIM}/apis", "apiVersion": "v", "name": "svc/api", "dependsOn": ["svc/off", "none"]},
        ]
    }
    plan = deployment(template).plan()
    assert [p.name for p in plan] == ["svc/api"] and not plan[0].depends_on
