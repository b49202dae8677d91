"""A small client for the admin surface (/_sandbox/), as `SandboxServer.admin`."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

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
        """The account's `account_id` and `state_file` (absolute path, None in memory), speed, state path, seed,
        import delay and the limits with their (scaled) windows; never the key."""
        return dict(self._call("GET", "/config"))

    def unsubscribe(
        self,
        email: str,
        list_id_or_name: str | int,
        *,
        campaign: int = 1,
        message: int = 1,
        reason: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """The contact unsubscribes themselves through the unsubscribe link of campaign `campaign`'s email
        `message`, typing `reason`, from the IPv4 address `ip` (default: this machine's address as the sandbox
        sees it). Recorded as unsubscribed_by "contact"; answers the membership."""
        body: dict[str, Any] = {"email": email, "list": str(list_id_or_name), "campaign": campaign, "message": message}
        body["reason"] = reason
        if ip is not None:
            body["ip"] = ip
        return dict(self._call("POST", "/unsubscribe", json=body))

    def unsubscribe_by_automation(self, email: str, list_id_or_name: str | int, automation: int) -> dict[str, Any]:
        """Automation `automation` runs its "unsubscribe from list" action for the contact (unsubscribed_by
        "automation"); answers the membership."""
        body = {"email": email, "list": str(list_id_or_name), "automation": automation}
        return dict(self._call("POST", "/automation_unsubscribe", json=body))

    def membership(self, email: str, list_id_or_name: str | int) -> dict[str, Any]:
        """{"email", "list", "status", "unsubscribed_by", "sdate", "udate", "unsubreason", "campaign", "message",
        "ip4Unsub", "unsubscribeAutomation"} of one contact on one list: the last seven as the API shows them."""
        return dict(self._call("GET", "/membership", params={"email": email, "list": str(list_id_or_name)}))

    def bounce(self, email: str, list_id_or_name: str | int | None = None, kind: str = "hard") -> dict[str, object]:
        """A campaign email to the contact bounced. "hard": status 3 on the list (or every list the contact is
        active on), `bounced_hard` up, `bounced_date` today, and bulk import fails the address from then on;
        "soft": only `bounced_soft` and `bounced_date`. Answers {"email", "bounced_hard", "bounced_soft",
        "bounced_date", "lists": {list id: status}}."""
        body: dict[str, Any] = {"email": email, "kind": kind}
        if list_id_or_name is not None:
            body["list"] = str(list_id_or_name)
        return dict(self._call("POST", "/bounce", json=body))

    def delete_contact(self, email: str) -> None:
        """A user deletes the contact in the app (memberships, tags and field values go with it)."""
        self._call("DELETE", f"/contacts/{quote(email)}")

    def delete_list(self, list_id_or_name: str | int) -> None:
        """A user deletes the list in the app (its memberships and grants to user groups go with it)."""
        self._call("DELETE", f"/lists/{quote(str(list_id_or_name))}")

    def add_to_list(self, email: str, list_id_or_name: str | int) -> dict[str, Any]:
        """A user adds the contact to the list by hand (status 1); answers the membership."""
        return dict(self._call("POST", f"/lists/{quote(str(list_id_or_name))}/members", json={"email": email}))

    def remove_from_list(self, email: str, list_id_or_name: str | int) -> dict[str, Any]:
        """A user unsubscribes the contact from the list by hand (status 2, unsubscribed_by "user"); answers
        the membership."""
        return dict(self._call("DELETE", f"/lists/{quote(str(list_id_or_name))}/members/{quote(email)}"))

    def set_field_value(self, email: str, field: str | int, value: str) -> dict[str, Any]:
        """A user changes the contact's value of a custom field (id, perstag or title) by hand."""
        return dict(self._call("PUT", f"/contacts/{quote(email)}/fields/{quote(str(field))}", json={"value": value}))

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
        """Empty the account, the request log and the rate-limit windows, and give the account a new account id;
        keep key, speed and fault rules."""
        self._call("POST", "/reset")
