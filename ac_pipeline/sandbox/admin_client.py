"""A small client for the admin surface (/_sandbox/), as `SandboxServer.admin`."""

from __future__ import annotations

import time
from typing import Any

import httpx


class SandboxAdminError(RuntimeError):
    """The admin surface refused a call; the message is its answer."""


class SandboxAdmin:
    """Calls the admin surface of the sandbox at `url` (the account API URL)."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=f"{url}/_sandbox", timeout=30.0)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise SandboxAdminError(f"{method} /_sandbox{path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> bool:
        return bool(self._call("GET", "/health")["ok"])

    def config(self) -> dict[str, Any]:
        """Speed, state path, seed, import delay and the limits with their (scaled) windows; never the key."""
        return dict(self._call("GET", "/config"))

    def unsubscribe(self, email: str, list_id_or_name: str | int) -> dict[str, Any]:
        """The contact unsubscribes themselves from the list (recorded as unsubscribed_by "contact")."""
        return dict(self._call("POST", "/unsubscribe", json={"email": email, "list": str(list_id_or_name)}))

    def membership(self, email: str, list_id_or_name: str | int) -> dict[str, Any]:
        """{"email", "list", "status", "unsubscribed_by"} of one contact on one list."""
        return dict(self._call("GET", "/membership", params={"email": email, "list": str(list_id_or_name)}))

    def exclude(self, emails: list[str]) -> list[str]:
        """Put addresses on the exclusion list; answers the whole list."""
        return list(self._call("POST", "/exclusions", json={"emails": list(emails)})["emails"])

    def exclusions(self) -> list[str]:
        return list(self._call("GET", "/exclusions")["emails"])

    def members(self, list_id_or_name: str | int, status: int = 1) -> list[str]:
        """Every (lower-case) email on the list with this status, in contact id order."""
        return list(self._call("GET", f"/lists/{list_id_or_name}/members", params={"status": status})["emails"])

    def list_info(self, list_id_or_name: str | int) -> dict[str, Any]:
        """{"id", "name", "visible", "groups"}: a list granted to no user group is not visible in the app."""
        return dict(self._call("GET", f"/lists/{list_id_or_name}"))

    def requests(self) -> dict[str, Any]:
        """Counts of /api/3 requests: total, by_path, by_status, by_path_status."""
        return dict(self._call("GET", "/requests"))

    def import_details(self, batch_id: str) -> dict[str, Any]:
        """A batch's status, success ids, failure emails and the reason for each failure."""
        return dict(self._call("GET", f"/imports/{batch_id}"))

    def pending_imports(self) -> int:
        return int(self.imports()["pending"])

    def imports(self) -> dict[str, Any]:
        """{"pending", "applied_batches", "applied_contacts", "busy_seconds"} of the import worker."""
        return dict(self._call("GET", "/imports"))

    def wait_for_imports(self, timeout: float = 30.0) -> None:
        """Wait until every accepted bulk import has been applied."""
        deadline = time.monotonic() + timeout
        while self.pending_imports():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Bulk imports still pending after {timeout} s.")
            time.sleep(0.01)

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "/faults"))

    def set_faults(self, spec_or_dict: str | dict[str, Any] | None, seed: int | None = None) -> dict[str, Any]:
        """Replace the fault rules (a spec string, or {"rules": [...]}); None clears them. Restarts the RNG."""
        if spec_or_dict is None or isinstance(spec_or_dict, str):
            body: dict[str, Any] = {"spec": spec_or_dict or ""}
        else:
            body = dict(spec_or_dict)
        if seed is not None:
            body["seed"] = seed
        return dict(self._call("PUT", "/faults", json=body))

    def reset(self) -> None:
        """Empty the account, the request log and the rate-limit windows; keep key, speed and fault rules."""
        self._call("POST", "/reset")
