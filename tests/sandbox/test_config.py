import json
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

from sandbox.config import DEFAULT_SEED, ConfigError, default_config, load_config
from sandbox.models import CampaignType


def test_default_seed_is_valid_and_documented_values_hold() -> None:
    config = default_config()
    (account,) = config.accounts
    assert account.api_tokens == ("sandbox-token",)
    assert account.webhook_secret == "whsec_sandbox"
    assert account.balances == {c: Decimal("10000.00") for c in ("GBP", "USD", "EUR")}
    assert {c.type: c.id for c in account.campaigns} == {
        CampaignType.GIFT_CARDS: UUID("6f1c2a9e-0000-4000-8000-000000000001"),
        CampaignType.CRYPTO: UUID("6f1c2a9e-0000-4000-8000-000000000002"),
        CampaignType.HYBRID: UUID("6f1c2a9e-0000-4000-8000-000000000003"),
    }
    countries = {country for brand in config.catalog for country in brand.countries}
    assert {"GB", "US", "DE"} <= countries
    assert config.rate_limit.requests_per_second == 10


def test_json_seed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(default_config().model_dump(mode="json")))
    assert load_config(seed) == default_config()


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    text = DEFAULT_SEED.read_text().replace('fee_percent: "2.5"', "fee_percent: lots")
    seed.write_text(text)
    line = text.splitlines().index("  fee_percent: lots") + 1
    with pytest.raises(ConfigError, match=rf"seed.yaml:{line}: fx.fee_percent: "):
        load_config(seed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accounts: [", "not valid yaml"),
        ("accounts: []", "seed.yaml:1: accounts: Tuple should have at least 1 item"),
        ("catalog: []\n", "accounts: Field required"),
    ],
)
def test_bad_seeds(tmp_path: Path, text: str, message: str) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(seed)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"accounts": [{"campaigns": [{"brands": ["no-such-brand"]}]}]}, "unknown brands"),
        ({"catalog": [{"brand": "x", "title": "X", "products": []}]}, "at least 1 item"),
    ],
)
def test_references_are_checked(overrides: dict[str, object], message: str) -> None:
    raw = default_config().model_dump(mode="json")
    if "accounts" in overrides:
        raw["accounts"][0]["campaigns"][0]["brands"] = ["no-such-brand"]
    else:
        raw["catalog"] = overrides["catalog"]
    with pytest.raises(ValueError, match=message):
        type(default_config()).model_validate(raw)


def test_duplicate_tokens_are_refused() -> None:
    raw = default_config().model_dump(mode="json")
    raw["accounts"].append({**raw["accounts"][0], "id": "other", "campaigns": []})
    with pytest.raises(ValueError, match="duplicate api token"):
        type(default_config()).model_validate(raw)


def test_with_overrides_deep_merges() -> None:
    config = default_config().with_overrides({"fx": {"fee_percent": "1"}})
    assert config.fx.fee_percent == Decimal(1)
    assert config.fx.rates == default_config().fx.rates
