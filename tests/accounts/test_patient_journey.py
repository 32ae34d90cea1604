"""The issue's definition of done, end to end over HTTP: a patient registers, logs in,
keeps a profile and diseases, and sees nobody else's."""

from __future__ import annotations

from typing import Any

from tests.assertions import assert_problem
from tests.factories import ApiClient


def _register_and_log_in(api: ApiClient, username: str) -> tuple[str, dict[str, str]]:
    password = f"{username}-password-1"
    registered = api.post(
        "/api/v1/users/",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert registered.status_code == 201, registered.json
    login = api.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert login.status_code == 200, login.json
    return registered.json["id"], {"Authorization": f"Bearer {login.json['access_token']}"}


def test_patient_journey(api: ApiClient) -> None:
    alice_id, alice = _register_and_log_in(api, "alice")
    bob_id, bob = _register_and_log_in(api, "bob")
    me = f"/api/v1/users/{alice_id}"

    def call(method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        return api.client.open(path, method=method, headers=headers, **kwargs)

    # A profile, created then edited.
    profile = {"blood_group": "O-", "date_of_birth": "1988-07-14", "sex": "female"}
    assert call("POST", f"{me}/profile", alice, json=profile).status_code == 201
    edited = call("PATCH", f"{me}/profile", alice, json={"blood_group": "O+"})
    assert edited.status_code == 200
    assert (edited.json["blood_group"], edited.json["sex"]) == ("O+", "female")

    # Diseases, recorded then edited.
    asthma = call("POST", f"{me}/diseases", alice, json={"name": "asthma"}).json
    call("POST", f"{me}/diseases", alice, json={"name": "hay fever", "details": "spring"})
    renamed = call(
        "PATCH", f"{me}/diseases/{asthma['id']}", alice, json={"diagnosed_on": "2001-03-02"}
    )
    assert renamed.json["diagnosed_on"] == "2001-03-02"
    names = [d["name"] for d in call("GET", f"{me}/diseases", alice).json["items"]]
    assert names == ["asthma", "hay fever"]

    # Bob sees none of it, and cannot tell whether alice exists.
    for path in (me, f"{me}/profile", f"{me}/diseases", f"{me}/diseases/{asthma['id']}"):
        assert_problem(call("GET", path, bob), 404)
    assert_problem(call("GET", "/api/v1/users/", bob), 403)
    assert call("GET", f"/api/v1/users/{bob_id}/diseases", bob).json["items"] == []

    # Nor may alice see bob.
    assert_problem(call("GET", f"/api/v1/users/{bob_id}", alice), 404)
