"""Write ``tests/cassettes/*.yaml`` from the verbatim documented examples in ``tests/fixtures``.

Run ``python -m tests.providers.build_cassettes`` to rebuild them. Each cassette plays the
documented example as page 1 at the documented request URL; when the example says
``has_more: true`` a second page ends the walk (OpenAI completions: the spec's schema-level
example in a bucket, also documented; Anthropic: an empty, constructed terminal page). To record
real responses instead, see the README ("Provider connections and API sync").
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
CASSETTES = HERE.parent / "cassettes"

OPENAI = "https://api.openai.com/v1"
ANTHROPIC = "https://api.anthropic.com/v1"
OPENAI_USAGE = (
    "completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
    "vector_stores", "code_interpreter_sessions", "file_search_calls", "web_search_calls",
)  # fmt: skip
ANTHROPIC_PATHS = {
    "messages": "organizations/usage_report/messages?starting_at=2025-08-01T00:00:00Z&bucket_width=1d",
    "cost_report": "organizations/cost_report?starting_at=2025-08-01T00:00:00Z&bucket_width=1d",
    "claude_code": "organizations/usage_report/claude_code?starting_at=2025-08-08",
}


def _interaction(uri: str, body: str, headers: dict[str, list[str]], method: str = "GET") -> dict:
    return {
        "request": {"body": None, "headers": headers, "method": method, "uri": uri},
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": {"content-type": ["application/json"]},
            "body": {"string": body},
        },
    }


def _write(name: str, source: str, interactions: list[dict]) -> None:
    header = (
        f"# Cassette {name}: built by tests/providers/build_cassettes.py from the verbatim documented\n"
        f"# example in {source} (see tests/fixtures/*/SOURCES.md), not recorded from a real account.\n"
        "# No secret is stored: authorization and x-api-key headers are filtered when recording\n"
        "# (tests/providers/conftest.py) and were never written here.\n"
    )
    dumper = yaml.SafeDumper
    dumper.ignore_aliases = lambda *_: True  # type: ignore[method-assign]
    text = yaml.dump({"interactions": interactions, "version": 1}, Dumper=dumper, sort_keys=False, allow_unicode=True)
    (CASSETTES / f"{name}.yaml").write_text(header + text)


def build() -> None:
    """Write every cassette."""
    CASSETTES.mkdir(exist_ok=True)
    for kind in (*OPENAI_USAGE, "costs"):
        path = "organization/costs" if kind == "costs" else f"organization/usage/{kind}"
        body = (FIXTURES / "openai" / f"{kind}_documented.json").read_text()
        uri = f"{OPENAI}/{path}?start_time=1730419200&limit=1"
        interactions = [_interaction(uri, body, {"content-type": ["application/json"]})]
        page = json.loads(body)
        if page["has_more"]:
            schema = json.loads((FIXTURES / "openai" / "completions_result_schema_example.json").read_text())
            last = {
                "object": "page",
                "data": [{"object": "bucket", "start_time": 1730505600, "end_time": 1730592000, "results": [schema]}],
                "has_more": False,
                "next_page": None,
            }
            interactions.append(_interaction(f"{uri}&page={page['next_page']}", json.dumps(last, indent=2), {}))
        _write(f"openai_{kind}", "provider-apis.md §1.6 (OpenAI OpenAPI spec x-oaiMeta examples)", interactions)
    for kind, path in ANTHROPIC_PATHS.items():
        body = (FIXTURES / "anthropic" / f"{kind}_documented.json").read_text()
        uri = f"{ANTHROPIC}/{path}"
        page = json.loads(body)
        headers = {"anthropic-version": ["2023-06-01"]}
        interactions = [_interaction(uri, body, headers)]
        if page["has_more"]:
            last = {"data": [], "has_more": False, "next_page": None}  # constructed terminal page
            interactions.append(_interaction(f"{uri}&page={page['next_page']}", json.dumps(last), headers))
        section = {"messages": "§2.4", "cost_report": "§2.5", "claude_code": "§2.6"}[kind]
        _write(f"anthropic_{kind}", f"provider-apis.md {section} (Anthropic Admin API reference)", interactions)


#: Tenant, client and subscription of the cloud cassettes (dummies; the spec example's own subscription).
AZURE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AZURE_SCOPE = "subscriptions/55312978-ba1b-415c-9304-c4b9c43c0481"
JSON = {"content-type": ["application/json"]}


def build_cloud() -> None:
    """Cassettes of the cloud billing providers (provider-apis.md §3-§7), each from its SOURCES.md."""
    fx = FIXTURES
    _write(
        "openrouter_activity",
        "provider-apis.md §7.1 (OpenRouter OpenAPI spec ActivityItem example)",
        [
            _interaction(
                "https://openrouter.ai/api/v1/activity?date=2025-08-24",
                (fx / "openrouter" / "activity_documented.json").read_text(),
                JSON,
            )
        ],
    )
    _write(
        "xai_usage",
        "provider-apis.md §4.1 (xAI Management API, third-party shapes)",
        [
            _interaction(
                "https://management-api.x.ai/auth/management-keys/validation",
                (fx / "xai" / "validation_documented.json").read_text(),
                JSON,
            ),
            _interaction(
                "https://management-api.x.ai/v1/billing/teams/team-123/usage",
                (fx / "xai" / "usage_documented.json").read_text(),
                JSON,
                "POST",
            ),
        ],
    )
    authority = f"https://login.microsoftonline.com/{AZURE_TENANT}"
    discovery = {
        "token_endpoint": f"{authority}/oauth2/v2.0/token",
        "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        "issuer": f"https://login.microsoftonline.com/{AZURE_TENANT}/v2.0",
    }
    token = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "cassette-token"}
    _write(
        "azure_openai_cost_management",
        "provider-apis.md §5.1 (Cost Management REST spec example ResourceGroupQuery.json)",
        [
            _interaction(f"{authority}/v2.0/.well-known/openid-configuration", json.dumps(discovery), JSON),
            _interaction(f"{authority}/oauth2/v2.0/token", json.dumps(token), JSON, "POST"),
            _interaction(
                f"https://management.azure.com/{AZURE_SCOPE}/providers/Microsoft.CostManagement/query?api-version=2023-11-01",
                (fx / "azure_openai" / "query_documented.json").read_text(),
                JSON,
                "POST",
            ),
        ],
    )
    gtoken = {"access_token": "cassette-token", "expires_in": 3600, "token_type": "Bearer"}
    _write(
        "google_bigquery_billing",
        "provider-apis.md §3.2 (billing export columns; tests/fixtures/google/SOURCES.md)",
        [
            _interaction("https://oauth2.googleapis.com/token", json.dumps(gtoken), JSON, "POST"),
            _interaction(
                "https://bigquery.googleapis.com/bigquery/v2/projects/billing-proj/queries",
                (fx / "google" / "query_constructed.json").read_text(),
                JSON,
                "POST",
            ),
        ],
    )


if __name__ == "__main__":
    build()
    build_cloud()
