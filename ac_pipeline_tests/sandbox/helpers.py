"""Helpers for the sandbox tests: an API client that waits out the rate limit, and small builders."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ac_pipeline.sandbox import SandboxServer

MakeSandbox = Callable[..., SandboxServer]


class Api:
    """httpx against sb.url/api/3 with the key; a 429 is waited out (Retry-After) and retried, boundedly."""

    def __init__(self, sb: SandboxServer, api_key: str | None = None) -> None:
        self.http = httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": api_key or sb.api_key}, timeout=10.0)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(100):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers["Retry-After"]))
        raise AssertionError(f"{method} {path} still throttled after 100 tries")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    # Builders -----------------------------------------------------------------------------------------

    def make_list(self, name: str = "Newsletter") -> str:
        body = {
            "list": {
                "name": name,
                "stringid": name.lower(),
                "sender_url": "https://example.com",
                "sender_reminder": "You signed up.",
            }
        }
        response = self.post("/lists", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["list"]["id"])

    def make_contact(self, email: str, **attributes: Any) -> str:
        response = self.post("/contacts", json={"contact": {"email": email, **attributes}})
        assert response.status_code == 201, response.text
        return str(response.json()["contact"]["id"])

    def make_field(self, title: str = "Plan") -> str:
        response = self.post("/fields", json={"field": {"title": title, "type": "text"}})
        assert response.status_code == 201, response.text
        return str(response.json()["field"]["id"])

    def subscribe(self, contact_id: str, list_id: str, status: int = 1) -> httpx.Response:
        return self.post(
            "/contactLists", json={"contactList": {"list": list_id, "contact": contact_id, "status": status}}
        )

    def bulk(self, contacts: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        return self.post("/import/bulk_import", json={"contacts": contacts, **extra})

    def wait_completed(self, batch_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll import/info until the batch is completed; its answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.get("/import/info", params={"batchId": batch_id}).json()
            if info["status"] == "completed":
                return dict(info)
            time.sleep(0.01)
        raise AssertionError(f"batch {batch_id} not completed after {timeout} s")
