"""Bad input stops before any request, with one line naming the setting and the fix."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_clevertap.config import config_problems
from tap_clevertap.discovery import stream_name_for
from tap_clevertap.sandbox import DEFAULT_PASSCODE, SandboxServer
from tap_clevertap.tap import TapClevertap
from tests.helpers import PASSCODES, capture_output, make_config, run_cli

PASSCODES.add("secret-pass")
GOOD: dict[str, Any] = {
    "account_id": "ACC",
    "passcode": "secret-pass",
    "event_names": ["App Launched"],
    "start_date": "2024-01-01",
}


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("App Launched", "app_launched"),
        ("Product Viewed (Web)", "product_viewed_web"),
        ("Añadir", "anadir"),
        ("  --Charged!!  ", "charged"),
        ("UTM Visited", "utm_visited"),
    ],
)
def test_stream_names(name: str, stream: str) -> None:
    assert stream_name_for(name) == stream


TOMORROW = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=2)).isoformat()

BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("missing account_id", {"account_id": None}, "'account_id' is a required property"),
    ("empty account_id", {"account_id": ""}, "`account_id` is empty"),
    ("empty passcode", {"passcode": "  "}, "`passcode` is empty"),
    ("missing passcode", {"passcode": None}, "'passcode' is a required property"),
    ("empty event_names", {"event_names": []}, "`event_names` is empty"),
    (
        "exclusions with event_names",
        {"exclude_event_names": ["Notification *"]},
        "`exclude_event_names` only applies to discovered events",
    ),
    ("reserved stream name", {"event_names": ["Profiles"]}, "a name the tap keeps"),
    ("empty profile_event_names", {"profile_event_names": []}, "`profile_event_names` is empty"),
    (
        "profiles of a not exportable event",
        {"profile_event_names": ["Notification Sent"]},
        "`profile_event_names`: CleverTap does not export 'Notification Sent'",
    ),
    ("batch_size too big", {"batch_size": 6000}, "in config['batch_size']"),
    ("batch_size zero", {"batch_size": 0}, "in config['batch_size']"),
    (
        "malformed start_date",
        {"start_date": "2024-13-01"},
        "`start_date` '2024-13-01' is not a date",
    ),
    ("malformed end_date", {"end_date": "01/02/2024"}, "`end_date` '01/02/2024' is not a date"),
    (
        "start after end",
        {"start_date": "2024-02-01", "end_date": "2024-01-01"},
        "is after `end_date`",
    ),
    ("end in the future", {"end_date": TOMORROW}, "is in the future"),
    ("unknown region", {"region": "xx9"}, "in config['region']"),
    ("api_url not a URL", {"api_url": "clevertap"}, "`api_url` 'clevertap' is not a URL"),
    ("plain http off loopback", {"api_url": "http://api.example.com"}, "plain http"),
    (
        "not exportable",
        {"event_names": ["App Launched", "Notification Viewed"]},
        "does not export 'Notification Viewed'",
    ),
    ("colliding names", {"event_names": ["App Launched", "app-launched"]}, "both map to stream"),
    ("unknown timezone", {"timezone": "Mars/Olympus"}, "`timezone` 'Mars/Olympus' is not"),
    (
        "negative campaign look-ahead",
        {"include_campaign_streams": True, "campaign_lookahead_days": -1},
        "-1 is less than the minimum of 0 in config['campaign_lookahead_days']",
    ),
    (
        "campaign window over 31 days",
        {"include_campaign_streams": True, "campaign_window_days": 32},
        "32 is greater than the maximum of 31 in config['campaign_window_days']",
    ),
    ("campaign window zero", {"campaign_window_days": 0}, "in config['campaign_window_days']"),
    (
        "message report window over 14 days",
        {"include_campaign_streams": True, "message_report_window_days": 15},
        "15 is greater than the maximum of 14 in config['message_report_window_days']",
    ),
    (
        "message report window not a number",
        {"message_report_window_days": "7"},
        "in config['message_report_window_days']",
    ),
    (
        "an event named like the counts stream",
        {"include_event_counts": True, "event_names": ["Event Counts"]},
        "'Event Counts' maps to stream 'event_counts', a name the tap keeps",
    ),
    (
        "an event named like a campaign stream",
        {"include_campaign_streams": True, "event_names": ["Campaigns"]},
        "'Campaigns' maps to stream 'campaigns', a name the tap keeps",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_is_refused_with_a_clear_message(
    case: str, change: dict[str, Any], message: str
) -> None:
    config = {**GOOD, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigValidationError) as info:
        TapClevertap(config=config)
    capture_output("\n".join(info.value.errors))
    assert any(message in error for error in info.value.errors), info.value.errors


def test_good_config_has_no_problems() -> None:
    assert config_problems(GOOD) == []
    # An event named like a campaign stream is refused only once those streams are on.
    assert config_problems({**GOOD, "event_names": ["Campaigns"]}) == []
    assert config_problems({**GOOD, "api_url": "http://127.0.0.1:9999"}) == []
    assert config_problems({**GOOD, "api_url": "http://localhost:1/"}) == []
    assert config_problems({**GOOD, "api_url": "https://eu1.proxy.example"}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_names": ["Notification Sent"]}, "does not export 'Notification Sent'"),
        ({"batch_size": 9000}, "9000 is greater than the maximum of 5000 in config['batch_size']"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-01"}, "is after `end_date`"),
        (
            {"include_campaign_streams": True, "campaign_lookahead_days": -7},
            "-7 is less than the minimum of 0 in config['campaign_lookahead_days']",
        ),
        (
            {"include_campaign_streams": True, "message_report_window_days": 30},
            "30 is greater than the maximum of 14 in config['message_report_window_days']",
        ),
    ],
)
def test_cli_stops_before_any_request(
    sandbox: SandboxServer, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    result = run_cli(make_config(sandbox, **change), tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert DEFAULT_PASSCODE not in result.stderr + result.stdout
    assert sandbox.requests == []


def test_cli_refused_credentials_stop_at_once(sandbox: SandboxServer, tmp_path: Path) -> None:
    result = run_cli(make_config(sandbox, passcode="wrong-passcode"), tmp_path)
    assert result.returncode == 1
    assert "CleverTap refused the credentials (HTTP 401)" in result.stderr
    assert "Traceback" not in result.stderr
    # No retries: no request is sent twice (the exports opened ahead fail once each too).
    sent = [(r["method"], r["query"], r["body"]) for r in sandbox.requests]
    assert len(sent) == len(set(sent)) <= 1 + 2


def test_about_lists_every_setting_and_hides_nothing_secret() -> None:
    about = subprocess.run(
        [sys.executable, "-m", "tap_clevertap", "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    settings = json.loads(about.stdout)["settings"]["properties"]
    for key in (
        "account_id",
        "passcode",
        "region",
        "api_url",
        "event_names",
        "start_date",
        "end_date",
        "timezone",
        "batch_size",
        "include_app_fields",
        "include_profile_fields",
        "window_days",
        "lookback_days",
    ):
        assert settings[key].get("description"), key
    assert settings["passcode"].get("secret") is True
    capture_output(about.stdout + about.stderr)


def test_a_passcode_of_the_wrong_type_is_not_echoed() -> None:
    PASSCODES.add("987654321")
    with pytest.raises(ConfigValidationError) as info:
        TapClevertap(config={**GOOD, "passcode": 987654321})
    capture_output("\n".join(info.value.errors))
    assert any("config['passcode']" in error for error in info.value.errors)


def test_fractional_seconds_from_a_config_file_work(sandbox: SandboxServer, tmp_path: Path) -> None:
    # JSON config files are read with floats as Decimal: waits must still work.
    sandbox.settings.prepare_seconds = 0.2
    config = make_config(sandbox, end_date="2024-01-01", export_poll_seconds=0.05)
    result = run_cli(config, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(r.get("code") == 2 for r in sandbox.requests)
    # Each log line once (the SDK adds a handler each time `cli` is read).
    assert result.stderr.count("app_launched: window 2024-01-01 done") == 1
