"""The client against the real sandbox over 127.0.0.1: the account (connection check, a wrong key or
URL), lists and groups.

The sandbox and the client's limits to match are described in client_sandbox_helpers.py.
"""

from __future__ import annotations

import pytest

from ac_pipeline.activecampaign import (
    ActiveCampaignClient,
    ActiveCampaignError,
    AuthError,
    NotFoundError,
    ValidationError,
)
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.activecampaign.client_sandbox_helpers import SANDBOX_LIMITS, assert_no_key, new_list

# -- account, lists, groups ------------------------------------------------------------------------------


def test_check_connection(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    info = client.check_connection()
    assert info["api_url"] == client.api_url
    assert info["lists_total"] == 0
    assert "Admin" in info["groups"]
    assert_no_key(info, client, client.stats)


def test_wrong_key_is_an_auth_error_that_does_not_repeat_the_key(sb: SandboxServer) -> None:
    wrong = "wrong-key-3141592653"
    with ActiveCampaignClient(sb.url, wrong, limits=SANDBOX_LIMITS) as bad:
        with pytest.raises(AuthError) as caught:
            bad.check_connection()
        assert "ACTIVECAMPAIGN_API_KEY" in str(caught.value)
        assert caught.value.status_code == 403
        assert bad.stats.retries == 0
        for text in (caught.value, repr(caught.value), vars(caught.value), bad, bad.stats):
            assert wrong not in str(text) and wrong not in repr(text)


def test_wrong_url_says_so(sb: SandboxServer) -> None:
    with ActiveCampaignClient(sb.url + "/not-the-api", sb.api_key, limits=SANDBOX_LIMITS, max_retries=0) as bad:
        with pytest.raises(ActiveCampaignError, match="ACTIVECAMPAIGN_API_URL"):
            bad.check_connection()


def test_lists_and_groups(client: ActiveCampaignClient) -> None:
    vip = new_list(client, "Audience: VIP")
    new_list(client, "Audience: VIP (old)")
    assert vip["name"] == "Audience: VIP" and vip["stringid"] == "audience-vip"
    assert client.find_list("Audience: VIP")["id"] == vip["id"]  # exact match among partial ones
    assert client.find_list("Audience") is None
    assert client.get_list(vip["id"])["name"] == "Audience: VIP"

    with pytest.raises(NotFoundError, match="No Result found for List with id 999999") as caught:
        client.get_list(999999)
    assert caught.value.status_code == 404

    admin = client.find_group("Admin")
    assert admin is not None and client.find_group("Nobody") is None
    assert [g["title"] for g in client.list_groups()] == ["Admin"]
    grant = client.grant_list_to_group(vip["id"], admin["id"])
    assert str(grant["list"]) == str(vip["id"]) and str(grant["group"]) == str(admin["id"])
    with pytest.raises(NotFoundError):
        client.grant_list_to_group(vip["id"], 999)


def test_create_list_missing_attribute_is_a_validation_error(client: ActiveCampaignClient) -> None:
    with pytest.raises(ValidationError) as caught:
        client.create_list("No sender", sender_url="", sender_reminder="x")
    assert caught.value.field == "sender_url"
    assert "ActiveCampaign rejected sender_url" in str(caught.value)
