from healthapp.domain.roles import Role


def test_register_and_read_self(api):
    admin = api.user(Role.ADMIN)
    r = api.post(
        "/api/v1/users/",
        json={"username": "alice", "email": "a@example.com", "password": "0123456789"},
    )
    assert r.status_code == 201, r.json
    uid = r.json["id"]
    assert api.get(f"/api/v1/users/{uid}", as_=admin).status_code == 200
