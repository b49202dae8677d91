"""A local ActiveCampaign API sandbox: the API an audience sync uses, with its limits, faults and an admin surface.

with SandboxServer(api_key="k", speed=100.0) as sb:
    httpx.get(sb.url + "/api/3/lists", headers={"Api-Token": sb.api_key})
"""

from ac_pipeline.sandbox.admin_client import SandboxAdmin, SandboxAdminError
from ac_pipeline.sandbox.server import SandboxServer

__all__ = ["SandboxAdmin", "SandboxAdminError", "SandboxServer"]
