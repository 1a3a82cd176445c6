"""api-version: required on every management call, checked against the versions Portico speaks."""

from __future__ import annotations

from dataclasses import dataclass

from portico.arm.errors import ArmError

SUPPORTED_API_VERSIONS: tuple[str, ...] = (
    "2014-02-14",
    "2015-09-15",
    "2016-07-07",
    "2016-10-10",
    "2017-03-01",
    "2018-01-01",
    "2019-01-01",
    "2019-12-01",
    "2020-12-01",
    "2021-08-01",
    "2022-08-01",
    "2024-05-01",
)
DEFAULT_API_VERSION = "2024-05-01"
_SUPPORTED = frozenset(SUPPORTED_API_VERSIONS)
# Resource groups are Microsoft.Resources resources: clients (azure-mgmt-resource, az CLI) send that
# provider's api-versions, not API Management's.
RESOURCES_API_VERSIONS: tuple[str, ...] = (
    "2016-09-01",
    "2017-05-10",
    "2018-05-01",
    "2019-05-01",
    "2019-05-10",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2020-06-01",
    "2020-08-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-03-01",
    "2025-04-01",
    "2026-06-01",
)
_RESOURCES = frozenset(RESOURCES_API_VERSIONS)


@dataclass(frozen=True)
class ApiVersions:
    """The api-versions one family of endpoints speaks (a provider's, or one endpoint's own)."""

    listed: tuple[str, ...]

    def __contains__(self, version: object) -> bool:
        return version in self.listed


APIM = ApiVersions(SUPPORTED_API_VERSIONS)
RESOURCES = ApiVersions(RESOURCES_API_VERSIONS)
# Soft-deleted services exist from 2020-06-01-preview on (of Portico's versions, 2020-12-01 on).
DELETED_SERVICES_SINCE = "2020-12-01"
DELETED_SERVICES = ApiVersions(tuple(v for v in SUPPORTED_API_VERSIONS if v >= DELETED_SERVICES_SINCE))
# Subscriptions and tenants (Microsoft.Resources/subscriptions): the versions azure-mgmt-resource's
# subscription client and the az CLI send (az login lists with 2022-12-01).
SUBSCRIPTIONS = ApiVersions(
    (
        "2016-06-01",
        "2018-06-01",
        "2019-06-01",
        "2019-11-01",
        "2020-01-01",
        "2021-01-01",
        "2022-01-01",
        "2022-12-01",
        "2024-11-01",
    )
)
# The cloud metadata document (`GET /metadata/endpoints`); `az cloud register` asks 2022-09-01.
METADATA = ApiVersions(("2015-01-01", "2018-01-01", "2019-05-01", "2020-06-01", "2022-09-01"))


def check_api_version(
    value: str | None, *, resource_groups: bool = False, versions: ApiVersions | None = None
) -> str:
    if not value:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    version = value.strip()
    if versions is not None:
        supported, listed = frozenset(versions.listed), versions.listed
    else:
        supported, listed = (
            (_RESOURCES, RESOURCES_API_VERSIONS) if resource_groups else (_SUPPORTED, SUPPORTED_API_VERSIONS)
        )
    if version not in supported:
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version[:40]}' is invalid. The supported api-versions are '{', '.join(listed)}'.",
        )
    return version


def requires_access_key(api_version: str) -> bool:
    """2019-12-01 and older backup/restore bodies have `accessKey` required (no `accessType`)."""
    return api_version <= "2019-12-01"
