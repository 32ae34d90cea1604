"""Forged, stale and misused tokens on both APIs: each the same 401 problem document.

tests/auth/test_token.py covers the Core API's answer to expired, unsigned and malformed
tokens built by the app itself; here the tokens are forged by hand, as an attacker would,
and sent to the Core API and the Reports API alike (the Reports API has the public key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from healthapp.auth.keys import public_jwk, thumbprint
from healthapp.auth.keys import public_pem as public_pem_of
from healthapp.domain.roles import Role
from healthapp.sessions.service import TOKEN_ISSUER_EXTENSION
from tests.assertions import assert_problem
from tests.factories import ApiClient, checkup_item, claims_of, sign

Forge = Callable[[dict[str, Any], str], str]


def _unsigned(claims: dict[str, Any]) -> str:
    return str(pyjwt.encode(claims, None, algorithm="none"))


def _hs256(claims: dict[str, Any], secret: bytes, **header: Any) -> str:
    """An HS256 token keyed with ``secret``, built by hand: PyJWT refuses a PEM as an HMAC
    key, an attacker's code would not."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', **header})}.{part(claims)}"
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


@pytest.fixture
def tokens(app: Any, api: ApiClient) -> dict[str, Any]:
    """A patient with a report, and tokens forged from one of theirs."""
    patient = api.user(Role.PATIENT)
    keys = app.extensions[TOKEN_ISSUER_EXTENSION].keys
    kid = keys.signing_kid
    public = keys.verifying[kid]
    good = claims_of(patient.access_token)
    now = int(time.time())
    as_admin = {**good, "role": "admin"}
    header, _payload, signature = patient.access_token.split(".")
    edited_payload = sign(app, as_admin).split(".")[1]
    attacker = Ed25519PrivateKey.generate()
    attacker_kid = thumbprint(attacker.public_key())
    attacker_jwk = public_jwk(attacker.public_key()) | {"kid": attacker_kid}
    elsewhere = "https://attacker.example/jwks.json"
    public_pem = public_pem_of(public).encode()
    raw_public = base64.urlsafe_b64decode(public_jwk(public)["x"] + "=")
    forged = {
        "expired": sign(app, {**good, "iat": now - 3600, "exp": now - 60}),
        "alg none": _unsigned(good),
        "alg none, role admin": _unsigned(as_admin),
        "role admin signed by another key under the server's kid": pyjwt.encode(
            as_admin, attacker, algorithm="EdDSA", headers={"kid": kid}
        ),
        "unknown kid": pyjwt.encode(
            as_admin, attacker, algorithm="EdDSA", headers={"kid": attacker_kid}
        ),
        "no kid": pyjwt.encode(good, keys.signing, algorithm="EdDSA"),
        "jku to the attacker's keys": pyjwt.encode(
            as_admin, attacker, algorithm="EdDSA", headers={"kid": attacker_kid, "jku": elsewhere}
        ),
        "x5u to the attacker's certificate": pyjwt.encode(
            as_admin, attacker, algorithm="EdDSA", headers={"kid": attacker_kid, "x5u": elsewhere}
        ),
        "the attacker's key embedded (jwk)": pyjwt.encode(
            as_admin, attacker, algorithm="EdDSA", headers={"jwk": attacker_jwk}
        ),
        "HS256 keyed with the public key's PEM": _hs256(as_admin, public_pem, kid=kid),
        "HS256 keyed with the public key's bytes": _hs256(as_admin, raw_public, kid=kid),
        "role admin, original signature": f"{header}.{edited_payload}.{signature}",
        "role admin, signature stripped": f"{header}.{edited_payload}.",
        "refresh token as access token": patient.refresh_token,
        "no username claim": sign(app, {k: v for k, v in good.items() if k != "username"}),
        "another issuer": sign(app, {**good, "iss": "someone-else"}),
        "garbage": "eyJhbGciOi.garbage.garbage",
        "not a jwt": "hello",
    }
    headers = {name: f"Bearer {token}" for name, token in forged.items()}
    headers |= {
        "missing Bearer": patient.access_token,
        "Basic scheme": "Basic cGF0aWVudDpwYXNzd29yZA==",
        "Bearer without a token": "Bearer ",
        "token twice": f"Bearer {patient.access_token} {patient.access_token}",
    }
    return {"patient": patient, "headers": headers}


@pytest.fixture
def targets(api: ApiClient, reports: Any, sync: Any, tokens: dict[str, Any]) -> dict[str, Any]:
    """One protected path per API, and the client that calls it; the patient's report synced."""
    patient = tokens["patient"]
    machine = api.machine()
    upload = {"checkups": [checkup_item(patient.id, machine)]}
    assert api.post("/api/v1/checkups/", as_=patient, json=upload).status_code == 201
    sync()
    return {
        "core": (api.client, f"/api/v1/users/{patient.id}"),
        "reports": (reports, f"/api/v1/users/{patient.username}/"),
    }


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_every_forged_or_misused_token_is_the_same_401(
    targets: dict[str, Any], tokens: dict[str, Any], api_name: str
) -> None:
    client, path = targets[api_name]
    patient = tokens["patient"]
    assert client.get(path, headers=patient.headers).status_code == 200  # the genuine token
    answers = []
    for name, header in tokens["headers"].items():
        response = client.get(path, headers={"Authorization": header})
        body = assert_problem(response, 401, f"{api_name}: {name}")
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        answers.append(body)
    missing = client.get(path)
    answers.append(assert_problem(missing, 401))
    assert all(answer == answers[0] for answer in answers)  # the cause is not disclosed


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_a_role_edited_token_does_not_open_staff_routes(
    targets: dict[str, Any], tokens: dict[str, Any], api_name: str
) -> None:
    client, _path = targets[api_name]
    staff_path = "/api/v1/users/"  # operators and admins only, on both APIs
    assert client.get(staff_path, headers=tokens["patient"].headers).status_code == 403
    for name, header in tokens["headers"].items():
        if "role admin" in name:
            response = client.get(staff_path, headers={"Authorization": header})
            assert_problem(response, 401, f"{api_name}: {name}")


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_the_bearer_scheme_is_case_insensitive(
    targets: dict[str, Any], tokens: dict[str, Any], api_name: str
) -> None:
    # RFC 9110 §11.1: the authentication scheme is matched case-insensitively.
    client, path = targets[api_name]
    patient = tokens["patient"]
    for scheme in ("bearer", "BEARER", "bEARER", "Bearer"):
        for _ in range(2):  # verified once, then taken from the verified tokens
            response = client.get(
                path, headers={"Authorization": f"{scheme} {patient.access_token}"}
            )
            assert response.status_code == 200, (scheme, response.json)
    if api_name == "core":  # the refresh token too
        refresh = client.post(
            "/api/v1/auth/refresh", headers={"Authorization": f"bearer {patient.refresh_token}"}
        )
        assert refresh.status_code == 200, refresh.json


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_a_forged_token_is_refused_in_any_case_of_the_scheme(
    targets: dict[str, Any], tokens: dict[str, Any], api_name: str
) -> None:
    client, path = targets[api_name]
    for name, header in tokens["headers"].items():
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer":
            continue
        response = client.get(path, headers={"Authorization": f"bearer {token}"})
        assert_problem(response, 401, f"{api_name}: {name}")
