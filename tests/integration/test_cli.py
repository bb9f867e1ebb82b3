"""The command line: rule checks and program creation."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewards.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"


def test_rules_check_accepts_the_examples() -> None:
    result = CliRunner().invoke(app, ["rules", "check", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert "full.yaml: ok" in result.output


def test_rules_check_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    event: y\n    points: -3\n")
    result = CliRunner().invoke(app, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:5:" in result.output


def test_programs_create_prints_a_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    created = runner.invoke(
        app, ["programs", "create", "--id", "acme", "--name", "Acme", "--timezone", "Europe/London"]
    )
    assert created.exit_code == 0, created.output
    assert "rwk_" in created.output
    again = runner.invoke(app, ["programs", "create", "--id", "acme", "--name", "Acme"])
    assert again.exit_code == 1
    bad = runner.invoke(app, ["programs", "create", "--id", "Bad Id", "--name", "x"])
    assert bad.exit_code == 2


def test_rules_check_warns_about_thresholds_that_overspend(tmp_path: Path) -> None:
    rules = tmp_path / "overlap.yaml"
    rules.write_text(
        """\
version: 1
rules:
  - {id: deal, event: crm.deal_closed, points: 100}
thresholds:
  - id: card
    every: 500
    reward: {amount: "25.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
  - id: six
    at: [600]
    reward: {amount: "10.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
"""
    )
    result = CliRunner().invoke(app, ["rules", "check", str(rules)])
    assert result.exit_code == 0, result.output  # a warning, not an error
    assert "warning: thresholds card, six cost 1100 points by 600" in result.output
    assert "awaiting_points" in result.output
