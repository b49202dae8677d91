"""The API root (GET /api/3/) and the key's own user (GET /api/3/users/me): what clients call to check a key.

ActiveCampaign's authentication reference shows `curl -H "Api-Token: ..." https://<account>.api-us1.com/api/3/`
(older text) and `.../api/3/users/me` (current text) as the way to try a key. Neither answer's body is published
for the root: the sandbox answers 200 with a small JSON object naming the API and where to go next, and a wrong key
gets the 403 every endpoint gives (the gate checks it first). `users/me` answers the one user of the sandbox
account, an admin, in the shape of the user resource.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.query import api_route
from ac_pipeline.sandbox.responses import answer, base_url
from ac_pipeline.sandbox.shapes import links

USER_LINKS = (
    "lists",
    "userGroup",
    "dealGroupTotals",
    "dealGroupUsers",
    "configs",
    "dealConnection",
    "userConversationsPermission",
    "seatUser",
)


async def api_root(request: Request) -> JSONResponse:
    base = base_url(request)
    return answer(
        {
            "message": "ActiveCampaign API v3 (sandbox). The key is valid.",
            "version": "3",
            "links": {name: f"{base}/api/3/{name}" for name in ("contacts", "lists", "tags", "fields", "users/me")},
        }
    )


async def users_me(request: Request) -> JSONResponse:
    base = base_url(request)
    user = {
        "username": "admin",
        "firstName": "Sandbox",
        "lastName": "Admin",
        "email": "admin@example.com",
        "phone": "",
        "signature": None,
        "links": links(base, "users", 1, USER_LINKS),
        "id": "1",
    }
    return answer({"user": user})


routes = [
    api_route("/api/3", api_root, "GET"),
    api_route("/api/3/", api_root, "GET"),
    api_route("/api/3/users/me", users_me, "GET"),
]
