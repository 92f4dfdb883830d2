"""`cairn render` and `cairn send-test` through the real command line (typer's runner)."""

from __future__ import annotations

import json
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.conftest import ACCOUNT, REGION, ROOT
from typer.testing import CliRunner

from cairn.cli.main import app
from cairn.domain import mime

runner = CliRunner()


@pytest.fixture
def ann(tmp_path: Path) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(
        json.dumps({"userId": "u-ann", "attributes": {"firstName": "Ann", "timezone": "Asia/Tokyo"}})
    )
    return path


def cairn(*args: str) -> Any:
    return runner.invoke(app, [*args, "--root", str(ROOT)])


def test_render_previews_an_email_for_a_contact(ann: Path, tmp_path: Path) -> None:
    html = tmp_path / "preview.html"

    result = cairn("render", "welcome-discount", "--contact", str(ann), "--html", str(html))

    assert result.exit_code == 0, result.output
    assert "Subject:   Welcome to Trailhead, Ann — 10% off your first order" in result.output
    assert "Preheader: Your code is inside." in result.output
    assert "Unsubscribe: https://links.example/v1/unsubscribe?token=preview" in result.output
    assert "<h1>Welcome, Ann!</h1>" in html.read_text()


def test_render_previews_an_sms_with_its_length_and_parts(ann: Path) -> None:
    result = cairn("render", "follow-us-sms", "--contact", str(ann))

    assert result.exit_code == 0, result.output
    assert "SMS (marketing, " in result.output and "1 part(s)" in result.output
    assert "Reply STOP to opt out." in result.output


def test_render_uses_the_trigger_event_when_given(tmp_path: Path, ann: Path) -> None:
    event = tmp_path / "cart.json"
    event.write_text(json.dumps({"event": "cart_abandoned", "properties": {"cart_value": 42}}))

    result = cairn("render", "welcome-discount", "--contact", str(ann), "--event", str(event))

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["render", "nope", "--contact", "{ann}"], "no email or SMS template 'nope'"),
        (["render", "welcome-discount", "--contact", "u-ann"], "is not a file"),
        (
            ["render", "welcome-discount", "--contact", "{ann}", "--channel", "fax"],
            "--channel must be email or sms",
        ),
        (["send-test", "welcome-discount", "--to", "me@example.com"], "--stack"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(ann: Path, args: list[str], reason: str) -> None:
    result = cairn(*[a.replace("{ann}", str(ann)) for a in args])

    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cairn: ") and reason in lines[0]


def test_send_test_dry_run_prints_the_message_marked_as_a_test(ann: Path) -> None:
    result = cairn(
        "send-test", "welcome-discount", "--to", "me@example.com", "--contact", str(ann), "--dry-run"
    )

    assert result.exit_code == 0, result.output
    mail = message_from_string(result.output, policy=policy.default)
    assert mail["Subject"] == "[TEST] Welcome to Trailhead, Ann — 10% off your first order"
    assert mail["To"] == "me@example.com"
    assert mime.parse_unsubscribe_headers(result.output.encode())["one_click"] is True


def test_send_test_sends_through_the_stacks_ses(aws: None, ann: Path) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="trailhead",
        TemplateBody=json.dumps(
            {
                "Parameters": {"SenderEmail": {"Type": "String"}},
                "Resources": {"Alarms": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {
                    "ConfigurationSetName": {"Value": "trailhead-configurationset"},
                    "PublicBaseUrl": {"Value": "https://go.trailhead.example"},
                },
            }
        ),
        Parameters=[{"ParameterKey": "SenderEmail", "ParameterValue": "news@mail.trailhead.example"}],
    )
    boto3.client("ses", region_name=REGION).verify_domain_identity(Domain="mail.trailhead.example")

    result = cairn(
        "send-test",
        "welcome-discount",
        "--to",
        "seed@example.com",
        "--contact",
        str(ann),
        "--stack",
        "trailhead",
    )

    assert result.exit_code == 0, result.output
    from moto.ses.models import ses_backends

    [raw] = ses_backends[ACCOUNT][REGION].sent_messages
    mail = message_from_string(raw.raw_data, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["From"] == "Trailhead Outfitters <news@mail.trailhead.example>"
    assert str(mail["Subject"]).startswith("[TEST] ")
    assert str(mail["List-Unsubscribe"]).startswith("<https://go.trailhead.example/v1/unsubscribe?token=")
