"""The sign-in pages in a real headless Chromium (selenium): the device-code page with MSAL polling,
and the interactive authorization-code flow where MSAL opens the browser at its loopback address."""

from __future__ import annotations

import shutil
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Iterator
from typing import Any

import msal
import pytest

from tests.support.server import PorticoServer

from .people_support import ARM_SCOPE, create_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromedriver") is None, reason="chromium-driver not installed (make test-deps)"
    ),
]

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
PASSWORD = "dana's long password"


@pytest.fixture(autouse=True)
def no_env_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., PorticoServer]) -> PorticoServer:
    s = server_factory(env={"PORTICO_DEVICE_CODE_INTERVAL_SECONDS": "1"})
    create_user(s, "dana@contoso.test", PASSWORD, "Dana <Ops>")
    return s


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    opts = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--ignore-certificate-errors",  # the test server's own CA is not in Chromium's store
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def app_for(server: PorticoServer, client_id: str) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id, authority=f"{server.url}/{server.tenant}", instance_discovery=False, verify=server.ca
    )


def wait_for(driver: Any, element_id: str) -> Any:
    """The element once the page that has it has loaded (a click does not wait for the next page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, element_id)))


def sign_in(driver: Any, upn: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, "username").send_keys(upn)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()


def test_device_code_page_in_chromium(server: PorticoServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    app = app_for(server, AZURE_CLI)
    flow = app.initiate_device_flow(scopes=[ARM_SCOPE])
    result: dict[str, Any] = {}
    poller = threading.Thread(target=lambda: result.update(app.acquire_token_by_device_flow(flow)))
    poller.start()
    browser.get(flow["verification_uri"])
    wait_for(browser, "user_code").send_keys(flow["user_code"])
    browser.find_element(By.ID, "next").click()
    assert wait_for(browser, "app-name").text == "Microsoft Azure CLI"
    sign_in(browser, "dana@contoso.test")
    assert "You have signed in to Microsoft Azure CLI" in wait_for(browser, "message").text
    poller.join(30)
    assert result.get("id_token_claims", {}).get("name") == "Dana <Ops>", result
    cookie = browser.get_cookie("portico_csrf")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_interactive_sign_in_in_chromium(
    server: PorticoServer, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def open_url(url: str, *_: Any, **__: Any) -> bool:
        def person() -> None:
            browser.get(url)  # MSAL's loopback page, which sends the browser to the sign-in page
            sign_in(browser, "dana@contoso.test")

        threading.Thread(target=person, daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", open_url)
    app = app_for(server, AZURE_CLI)
    result = app.acquire_token_interactive([ARM_SCOPE], timeout=60)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "dana@contoso.test"
