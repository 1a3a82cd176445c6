"""BROWSER for `az login` in tests: detaches (az waits for the browser command), then plays the
person over HTTP and posts the sign-in answer (form_post) to az's loopback listener."""

from __future__ import annotations

import html
import os
import re
import sys
from pathlib import Path

if __name__ == "__main__":
    if os.fork():
        sys.exit(0)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import httpx

    from tests.identity.people_support import hidden_fields

    with httpx.Client(verify=os.environ["PORTICO_TEST_CA"], timeout=30) as client:
        page = client.get(sys.argv[1], follow_redirects=True)
        answer = client.post(
            str(page.url.copy_with(query=None)),
            data={
                **hidden_fields(page.text),
                "username": os.environ["PORTICO_TEST_UPN"],
                "password": os.environ["PORTICO_TEST_PASSWORD"],
                "action": "signin",
            },
        )
        target = re.search(r'<form method="post" action="([^"]+)"', answer.text)
        if target is None:
            sys.exit(f"no sign-in answer: {answer.status_code} {answer.text[:300]}")
        httpx.post(html.unescape(target.group(1)), data=hidden_fields(answer.text), timeout=10)
