"""The directory: upsert, bulk (JSON and CSV), read, tenure bands."""

from tests.conftest import Clock, ProgramClient

CSV = """id,email,name,department,role,hire_date,tier,country,timezone,leaderboard_opt_out,region
u-1,ann@example.com,Ann,sales,sdr,2025-06-01,gold,gb,Europe/London,false,emea
u-2,bob@example.com,Bob,engineering,dev,2019-01-15,,US,America/New_York,yes,amer
u-3,not-an-email,Cy,sales,sdr,,,,,,
"""


async def test_put_and_get_user_with_tenure_band(program: ProgramClient, clock: Clock) -> None:
    clock.set("2026-11-22T12:00:00+00:00")
    created = await program.put_user(
        "u-42",
        email="u42@example.com",
        name="Jo",
        department="sales",
        role="sdr",
        hire_date="2025-02-01",
        tier="gold",
        country="gb",
        timezone="Europe/London",
        attributes={"region": "emea"},
    )
    assert created["created"] is True
    assert created["country"] == "GB"
    assert created["tenure_band"] == "1-2y"
    again = await program.put_user("u-42", name="Jo B")
    assert again["created"] is False
    read = (await program.request("GET", "/v1/users/u-42")).json()
    # PUT replaces: fields not sent are cleared
    assert read["name"] == "Jo B" and read["department"] is None and read["tenure_band"] is None


async def test_invalid_user_fields_name_the_field(program: ProgramClient) -> None:
    response = await program.request(
        "PUT",
        "/v1/users/u-1",
        json={"email": "nope", "hire_date": "yesterday", "timezone": "Nowhere/City", "shoe": 9},
    )
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.json()["error"]["details"]}
    assert pointers == {"/email", "/hire_date", "/timezone", "/shoe"}
    assert (await program.request("GET", "/v1/users/u-1")).status_code == 404
    bad_id = await program.request("PUT", "/v1/users/bad id!", json={})
    assert bad_id.status_code == 422


async def test_bulk_json_gives_per_row_results(program: ProgramClient) -> None:
    rows = [
        {"id": "a", "name": "A"},
        {"id": "b", "email": "bad"},
        {"name": "no id"},
        {"id": "a", "name": "A2"},
    ]
    response = await program.request("POST", "/v1/users:bulk", json=rows)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "rejected", "rejected", "updated"]
    assert body["results"][1]["error"]["details"][0]["pointer"] == "/email"
    assert (body["created"], body["updated"], body["rejected"]) == (1, 1, 2)
    assert (await program.request("GET", "/v1/users/a")).json()["name"] == "A2"


async def test_bulk_csv_maps_extra_columns_to_attributes(program: ProgramClient) -> None:
    response = await program.request(
        "POST", "/v1/users:bulk", content=CSV, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "created", "rejected"]
    bob = (await program.request("GET", "/v1/users/u-2")).json()
    assert bob["attributes"] == {"region": "amer"}
    assert bob["leaderboard_opt_out"] is True and bob["tier"] is None


async def test_the_largest_bulk_upload_goes_in_whole(program: ProgramClient) -> None:
    # 10,000 rows of fifteen columns bind more values than one statement may hold.
    rows = [{"id": f"u{i}", "name": f"User {i}", "department": "sales"} for i in range(10_000)]
    for expected in ("created", "updated"):
        response = await program.request("POST", "/v1/users:bulk", json=rows)
        assert response.status_code == 200, response.text
        assert response.json()[expected] == 10_000
    assert (await program.request("GET", "/v1/users/u9999")).json()["name"] == "User 9999"
    assert (await program.balance("u9999"))["balance"] == 0


async def test_bulk_limits_and_garbage(program: ProgramClient) -> None:
    too_many = [{"id": f"u{i}"} for i in range(10_001)]
    assert (await program.request("POST", "/v1/users:bulk", json=too_many)).status_code == 413
    assert (await program.request("POST", "/v1/users:bulk", json={"x": 1})).status_code == 422
    no_header = await program.request(
        "POST", "/v1/users:bulk", content="a,b\n1,2\n", headers={"Content-Type": "text/csv"}
    )
    assert no_header.status_code == 422


async def test_attributes_must_fit_every_store(program: ProgramClient) -> None:
    huge = await program.request("PUT", "/v1/users/u-1", json={"attributes": {"n": 2**70}})
    assert huge.status_code == 422
    assert huge.json()["error"]["details"][0]["pointer"] == "/attributes"
    deep: dict = {}
    for _ in range(20):
        deep = {"x": deep}
    assert (
        await program.request("PUT", "/v1/users/u-1", json={"attributes": deep})
    ).status_code == 422
    fine = await program.request(
        "PUT", "/v1/users/u-1", json={"attributes": {"n": 2**63 - 1, "s": "é"}}
    )
    assert fine.status_code == 200


async def test_stray_carriage_returns_and_binary_csv_are_clear_errors(
    program: ProgramClient,
) -> None:
    response = await program.request(
        "POST", "/v1/users:bulk", content="\r\xf3w\n".encode(), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_csv"
    binary = await program.request(
        "POST", "/v1/users:bulk", content=b"\xff\xfe\x00", headers={"Content-Type": "text/csv"}
    )
    assert binary.status_code == 400
