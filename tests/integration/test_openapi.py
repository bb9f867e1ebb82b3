"""The served OpenAPI document says what the API does (issue 12 §7); Schemathesis checks the
rest in .ci/run."""

from __future__ import annotations

import httpx

from api.limits import Credential, policy_for
from tests.conftest import ProgramClient


async def test_405_names_every_method_of_the_path(program: ProgramClient) -> None:
    response = await program.request("DELETE", "/v1/challenges")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, PUT"
    keys = await program.request("PATCH", "/v1/programs/current/keys")
    assert keys.headers["allow"] == "GET, HEAD, POST"


async def test_the_document_describes_limits_and_answers(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = set(operation["responses"])
            if policy_for(method.upper(), path).credential is not Credential.none:
                assert {"401", "429"} <= answers, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= answers, (method, path)
    events = paths["/v1/events"]["post"]["responses"]
    assert "5 MB" in events["413"]["description"]
    assert "Retry-After" in events["429"]["headers"]
    board = {p["name"]: p["schema"] for p in paths["/v1/leaderboards/{board}"]["get"]["parameters"]}
    assert (board["limit"]["minimum"], board["limit"]["maximum"]) == (1, 500)
    ledger = paths["/v1/users/{user_id}/ledger"]["get"]["parameters"]
    limit = next(p for p in ledger if p["name"] == "limit")["schema"]["anyOf"][0]
    assert (limit["minimum"], limit["maximum"]) == (1, 500)
    schemas = document["components"]["schemas"]
    assert schemas["KeyIn"]["properties"]["scopes"]["minItems"] == 1
    assert "pattern" in schemas["ProgramIn"]["properties"]["id"]
    assert "pattern" in schemas["UserIn"]["properties"]["country"]
    webhook = paths["/v1/webhooks/gifq/{program_id}"]["post"]["parameters"][0]["schema"]
    assert "pattern" in webhook
