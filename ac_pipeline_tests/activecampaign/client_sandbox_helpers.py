"""What the client's sandbox tests (test_client_sandbox_*.py) share: the sandbox's speed and key, the
client's limits to match, and small builders of lists, fields and people.

The sandbox runs 100 times faster than real time (its windows shrink by 100: 5 requests per 10 ms), so a
client with the documented limits scaled by 100 is the real setup, sped up. Its safety margin is wider than the
default: in a 10 ms window the scheduling jitter of a Python server on a busy 2-core machine weighs more than
network jitter does in the real one-second window, and the tests assert that no 429 happens at all.
"""

from __future__ import annotations

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.sandbox import SandboxServer

SPEED = 100.0
KEY = "sandbox-secret-key-5f2c9a"
SANDBOX_LIMITS = RateLimits(safety_margin=0.2).scaled(SPEED)


def connect(sb: SandboxServer, **kwargs) -> ActiveCampaignClient:
    kwargs.setdefault("limits", SANDBOX_LIMITS)
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.1)
    kwargs.setdefault("timeout", 10.0)
    kwargs.setdefault("seed", 0)
    return ActiveCampaignClient(sb.url, sb.api_key, **kwargs)


def new_list(client: ActiveCampaignClient, name: str = "Audience: VIP") -> dict:
    return client.create_list(name, sender_url="https://shop.example", sender_reminder="You bought from us.")


def assert_no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text)
        assert KEY not in repr(text)


def make_field(client: ActiveCampaignClient, title: str) -> dict:
    body = {"field": {"title": title, "type": "text", "perstag": title.upper().replace(" ", "_")}}
    return client.request("POST", "fields", json=body)["field"]


def people(n: int, list_id: str, start: int = 0) -> list[dict]:
    return [
        {"email": f"Person{i:04d}@Example.com", "first_name": f"P{i}", "subscribe": [{"listid": str(list_id)}]}
        for i in range(start, start + n)
    ]
