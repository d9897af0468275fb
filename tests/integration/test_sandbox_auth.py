"""Sandbox authentication: app headers, login, JWT expiry (401 error_code 11), refresh."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl
from tests.fixtures.sandbox import IN_PROCESS_BASE_URL, RawViolet


def jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


async def test_login_returns_a_user_a_jwt_and_a_refresh_token(sandbox_violet: RawViolet) -> None:
    body = await sandbox_violet.login()
    assert body["email"] == SANDBOX_CREDENTIALS["username"]
    assert body["refresh_token"]
    claims = jwt_payload(body["token"])
    assert claims["exp"] - claims["iat"] == 86400
    assert claims["app_id"] == SANDBOX_CREDENTIALS["app_id"]
    assert claims["sub"] == SANDBOX_CREDENTIALS["username"]


@pytest.mark.parametrize("header", ["X-Violet-App-Id", "X-Violet-App-Secret", "X-Violet-Token"])
async def test_a_missing_header_is_401_naming_it(sandbox_violet: RawViolet, header: str) -> None:
    headers = {k: v for k, v in sandbox_violet.headers.items() if k != header}
    response = await sandbox_violet.client.get("/checkout/cart/80000", headers=headers)
    assert response.status_code == 401
    assert header in response.json()["message"]


async def test_wrong_app_secret_is_403(sandbox_violet: RawViolet) -> None:
    headers = {**sandbox_violet.headers, "X-Violet-App-Secret": "wrong"}
    response = await sandbox_violet.client.get("/checkout/cart/80000", headers=headers)
    assert response.status_code == 403
    assert "X-Violet-App-Secret" in response.json()["message"]


async def test_wrong_password_is_401(sandbox_violet: RawViolet) -> None:
    response = await sandbox_violet.client.post(
        "/login",
        headers=sandbox_violet.headers,
        json={"username": SANDBOX_CREDENTIALS["username"], "password": "nope"},
    )
    assert response.status_code == 401
    assert "nope" not in response.text


async def test_tampered_token_is_401(sandbox_violet: RawViolet) -> None:
    header, _payload, signature = sandbox_violet.headers["X-Violet-Token"].split(".")
    claims = jwt_payload(sandbox_violet.headers["X-Violet-Token"])
    claims["exp"] += 3600
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    headers = {**sandbox_violet.headers, "X-Violet-Token": f"{header}.{forged}.{signature}"}
    response = await sandbox_violet.client.post("/orders/search", headers=headers, json={})
    assert response.status_code == 401
    assert response.json()["error_code"] != 11


async def test_expired_token_is_401_error_code_11_and_refresh_recovers(
    sandbox_transport: httpx.AsyncBaseTransport, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(token_ttl_seconds=0)
    async with httpx.AsyncClient(
        transport=sandbox_transport, base_url=IN_PROCESS_BASE_URL
    ) as client:
        violet = RawViolet(client)
        await violet.login()
        expired = await violet.post("/orders/search", json={})
        assert expired.status_code == 401
        body = expired.json()
        assert (body["status"], body["message"], body["error_code"]) == (
            401, "Token has expired", 11,
        )  # fmt: skip
        assert isinstance(body["timestamp"], int)

        await sandbox_control.configure(token_ttl_seconds=3600)
        refreshed = await client.get(
            "/auth/token", headers={**violet.headers, "X-Violet-Token": violet.refresh_token or ""}
        )
        assert refreshed.status_code == 200
        token = refreshed.json()["token"]
        assert set(refreshed.json()) == {"token"}
        claims = jwt_payload(token)
        assert claims["exp"] - claims["iat"] == 3600
        violet.headers["X-Violet-Token"] = token
        assert (await violet.post("/orders/search", json={})).status_code == 200


async def test_control_can_expire_every_issued_token(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 200
    await sandbox_control.expire_tokens()
    response = await sandbox_violet.post("/orders/search", json={})
    assert (response.status_code, response.json()["error_code"]) == (401, 11)
    await sandbox_violet.login()
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 200


async def test_revoked_refresh_token_is_refused(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    assert sandbox_violet.refresh_token is not None
    refresh_headers = {**sandbox_violet.headers, "X-Violet-Token": sandbox_violet.refresh_token}
    ok = await sandbox_violet.client.get("/auth/token", headers=refresh_headers)
    assert ok.status_code == 200
    assert await sandbox_control.revoke_refresh_tokens() == 1
    refused = await sandbox_violet.client.get("/auth/token", headers=refresh_headers)
    assert refused.status_code == 401


async def test_access_token_is_not_a_refresh_token(sandbox_violet: RawViolet) -> None:
    response = await sandbox_violet.client.get("/auth/token", headers=sandbox_violet.headers)
    assert response.status_code == 401
