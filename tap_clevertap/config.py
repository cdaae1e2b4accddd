"""Settings: the config schema, region hosts, and checks on the whole config.

Every check here runs before any request is sent, and every problem is one line that names
the setting and says how to fix it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from singer_sdk import typing as th

from tap_clevertap.discovery import NOT_EXPORTABLE_EVENTS, reserved_stream_names, stream_name_for

REGION_HOSTS = {
    "eu1": "https://api.clevertap.com",
    "global": "https://api.clevertap.com",  # the dashboard's name for eu1
    "in1": "https://in1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
}

MAX_BATCH_SIZE = 5000
# CleverTap's limit of requests in flight per account (HTTP 429 over it).
ACCOUNT_CONCURRENCY_LIMIT = 3
# Waits while an export is prepared (`code` 2): `export_poll_seconds`, then this many times
# longer each time, never more than POLL_MAX_WAIT seconds.
POLL_GROWTH = 1.5
POLL_MAX_WAIT = 60.0

# Campaigns are listed in windows of at most this many days ("optimized for 31 days or
# less"); message reports in windows of at most 14 (their latency grows with the range).
MAX_CAMPAIGN_WINDOW_DAYS = 31
MAX_MESSAGE_REPORT_WINDOW_DAYS = 14
DEFAULT_CAMPAIGN_LOOKAHEAD_DAYS = 365

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "account_id",
        th.StringType,
        required=True,
        description="CleverTap account ID, sent as X-CleverTap-Account-Id.",
    ),
    th.Property(
        "passcode",
        th.StringType,
        required=True,
        secret=True,
        description="CleverTap account passcode, sent as X-CleverTap-Passcode. Never logged.",
    ),
    th.Property(
        "region",
        th.StringType,
        default="eu1",
        allowed_values=list(REGION_HOSTS),
        description="Account region (see the dashboard URL; `global` is eu1); picks the API host.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        description=(
            "Base URL overriding `region` (proxies, new regions, the sandbox); "
            "`/1/events.json` is appended. Plain http is allowed only for loopback hosts."
        ),
    ),
    th.Property(
        "event_names",
        th.ArrayType(th.StringType),
        description=(
            'CleverTap event names, one stream each, e.g. ["App Launched", "Charged"]. '
            "Default: every event the project lists (getSchema), less `exclude_event_names` "
            "and the events CleverTap does not export."
        ),
    ),
    th.Property(
        "exclude_event_names",
        th.ArrayType(th.StringType),
        description=(
            "Event names or shell-style patterns (`Notification *`) left out of the events "
            "discovered when `event_names` is not set."
        ),
    ),
    th.Property(
        "start_date",
        th.DateType,
        required=True,
        description="First day exported (YYYY-MM-DD, in the account's time zone).",
    ),
    th.Property(
        "end_date",
        th.DateType,
        description="Last day exported, inclusive (YYYY-MM-DD). Default: today in `timezone`.",
    ),
    th.Property(
        "timezone",
        th.StringType,
        default="UTC",
        description="IANA name of the account's time zone: CleverTap's days and `ts` are in it.",
    ),
    th.Property(
        "batch_size",
        th.IntegerType(minimum=1, maximum=MAX_BATCH_SIZE),
        default=MAX_BATCH_SIZE,
        description=(
            f"Records per page asked of CleverTap (1..{MAX_BATCH_SIZE}); pages may hold fewer."
        ),
    ),
    th.Property(
        "include_app_fields",
        th.BooleanType,
        default=False,
        description="Events: app=true adds os_version, app_version, make, model to `profile`.",
    ),
    th.Property(
        "include_profile_fields",
        th.BooleanType,
        default=False,
        description="Events: profile=true adds the custom profile properties (`profileData`).",
    ),
    th.Property(
        "include_event_summary",
        th.BooleanType,
        default=False,
        description=(
            "Events: events=true adds the user's lifetime summary per event (`profile.events`, "
            "about three quarters of a record's bytes)."
        ),
    ),
    th.Property(
        "profile_event_names",
        th.ArrayType(th.StringType),
        description=(
            "Adds the `profiles` stream: the profiles of the users who did these events, "
            'window by window, e.g. ["App Launched"].'
        ),
    ),
    th.Property(
        "profiles_include_app_fields",
        th.BooleanType,
        default=True,
        description="Profiles: app=true adds the device fields to each `platformInfo` item.",
    ),
    th.Property(
        "profiles_include_event_summary",
        th.BooleanType,
        default=True,
        description="Profiles: events=true adds the lifetime summary per event (`events`).",
    ),
    th.Property(
        "profiles_include_profile_fields",
        th.BooleanType,
        default=True,
        description="Profiles: profile=true adds the custom profile properties (`profileData`).",
    ),
    th.Property(
        "include_catalog_streams",
        th.BooleanType,
        default=False,
        description=(
            "Adds the `event_schema` and `user_properties` streams: the project's schema "
            "catalogs (getSchema), whole every run."
        ),
    ),
    th.Property(
        "include_campaign_streams",
        th.BooleanType,
        default=False,
        description=(
            "Adds the `campaigns`, `campaign_reports`, `message_reports`, `content_blocks` "
            "and `category_groups` streams (see the README for what each endpoint returns)."
        ),
    ),
    th.Property(
        "include_event_counts",
        th.BooleanType,
        default=False,
        description=(
            "Adds the `event_counts` stream: for each event and day the run read, CleverTap's "
            "own count (its count API) beside the records the tap emitted."
        ),
    ),
    th.Property(
        "campaign_lookahead_days",
        th.IntegerType(minimum=0),
        default=DEFAULT_CAMPAIGN_LOOKAHEAD_DAYS,
        description=(
            "Campaigns: days after today also listed (campaigns are matched on their "
            "scheduled start, which can lie in the future)."
        ),
    ),
    th.Property(
        "campaign_window_days",
        th.IntegerType(minimum=1, maximum=MAX_CAMPAIGN_WINDOW_DAYS),
        default=MAX_CAMPAIGN_WINDOW_DAYS,
        description=(
            f"Campaigns: days per list request (1..{MAX_CAMPAIGN_WINDOW_DAYS}; CleverTap "
            f"answers best for {MAX_CAMPAIGN_WINDOW_DAYS} days or less)."
        ),
    ),
    th.Property(
        "message_report_window_days",
        th.IntegerType(minimum=1, maximum=MAX_MESSAGE_REPORT_WINDOW_DAYS),
        default=MAX_MESSAGE_REPORT_WINDOW_DAYS,
        description=(
            f"Message reports: days per request (1..{MAX_MESSAGE_REPORT_WINDOW_DAYS}; "
            "CleverTap's answer slows down as the range grows)."
        ),
    ),
    th.Property(
        "window_days",
        th.IntegerType(minimum=1),
        default=1,
        description="Days per export request; the bookmark moves after each whole window.",
    ),
    th.Property(
        "lookback_days",
        th.IntegerType(minimum=0),
        default=1,
        description="Days before the bookmark that a new sync reads again, for late events.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=300,
        description="Seconds to wait for one HTTP response before retrying it.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=5,
        description="Retries of one request after HTTP 429/5xx, throttling or a broken reply.",
    ),
    th.Property(
        "retry_wait_seconds",
        th.NumberType(minimum=0),
        default=2,
        description="First wait before a retry; doubles each time (with jitter).",
    ),
    th.Property(
        "throttle_wait_seconds",
        th.NumberType(minimum=0),
        default=30,
        description="Wait after CleverTap's `code` 1 (throttled) when no Retry-After is given.",
    ),
    th.Property(
        "export_poll_seconds",
        th.NumberType(minimum=0),
        default=1,
        description=(
            f"First wait while an export is being prepared (`code` 2); each next wait is "
            f"{POLL_GROWTH:g} times longer, up to {POLL_MAX_WAIT:g} s."
        ),
    ),
    th.Property(
        "export_wait_timeout",
        th.NumberType(minimum=0),
        default=1800,
        description="Seconds to keep polling one export that is still being prepared.",
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1),
        default=ACCOUNT_CONCURRENCY_LIMIT,
        description=(
            f"HTTP requests in flight at once (CleverTap allows {ACCOUNT_CONCURRENCY_LIMIT} per "
            "account). Above 1, "
            "the exports after the one being written are prepared and read ahead."
        ),
    ),
    th.Property(
        "max_exports_ahead",
        th.IntegerType(minimum=0),
        default=2,
        description=(
            "Exports read ahead at once besides the one being written (each holds a cursor)."
        ),
    ),
    th.Property(
        "spool_memory_bytes",
        th.IntegerType(minimum=0),
        default=16 * 2**20,
        description="Bytes of pages read ahead kept in memory before they go to files.",
    ),
    th.Property(
        "spool_disk_bytes",
        th.IntegerType(minimum=0),
        default=4 * 2**30,
        description=(
            "Bytes of pages read ahead kept in temporary files; when both budgets are used, "
            "reading ahead pauses."
        ),
    ),
    th.Property(
        "spool_dir",
        th.StringType,
        description=(
            "Where the files of pages read ahead go (a private directory per run, removed at "
            "the end); default: the system's temporary directory."
        ),
    ),
    th.Property(
        "max_window_restarts",
        th.IntegerType(minimum=0),
        default=3,
        description="Times a window is requested again after its cursor is refused or expires.",
    ),
).to_dict()


# The tap's own settings. (The SDK later adds its built-in ones, such as stream_maps, to
# CONFIG_SCHEMA in place.)
TAP_SETTINGS = tuple(CONFIG_SCHEMA["properties"])


def parse_date(value: str) -> dt.date:
    """A `YYYY-MM-DD` setting as a date."""
    return dt.date.fromisoformat(value)


def seconds(config: Mapping[str, Any], key: str) -> float:
    """A number setting as a float.

    The SDK's command line reads JSON numbers with a fraction as `Decimal`, which
    `time.sleep` and float arithmetic refuse.
    """
    return float(config[key])


def base_url(config: Mapping[str, Any]) -> str:
    """The API host: `api_url` when set, else the region's."""
    if config.get("api_url"):
        return str(config["api_url"]).rstrip("/")
    return REGION_HOSTS[config.get("region") or "eu1"]


def config_problems(config: Mapping[str, Any], *, today: dt.date | None = None) -> list[str]:
    """Problems the config alone shows; each is one line naming the setting and the fix."""
    problems: list[str] = []
    for key in ("account_id", "passcode"):
        value = config.get(key)
        if isinstance(value, str) and not value.strip():
            problems.append(f"`{key}` is empty: copy it from CleverTap's Settings > Passcode page")
    problems += _event_name_problems(config.get("event_names"), reserved_stream_names(config))
    problems += _profile_event_problems(config.get("profile_event_names"))
    if config.get("event_names") is not None and config.get("exclude_event_names"):
        problems.append(
            "`exclude_event_names` only applies to discovered events: drop it, or drop "
            "`event_names` to export every event but the excluded ones"
        )
    problems += _url_problems(config)

    zone = None
    tz_name = config.get("timezone", "UTC")
    try:
        zone = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            f"`timezone` {tz_name!r} is not an IANA time zone name: use e.g. 'Asia/Kolkata'"
        )

    dates: dict[str, dt.date] = {}
    for key in ("start_date", "end_date"):
        value = config.get(key)
        if isinstance(value, str):
            try:
                dates[key] = parse_date(value)
            except ValueError:
                problems.append(f"`{key}` {value!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-31")
    if "start_date" in dates and "end_date" in dates and dates["start_date"] > dates["end_date"]:
        problems.append(
            f"`start_date` {dates['start_date']} is after `end_date` {dates['end_date']}: "
            "swap them or drop end_date"
        )
    if "end_date" in dates and zone is not None:
        local_today = today or dt.datetime.now(zone).date()
        if dates["end_date"] > local_today:
            problems.append(
                f"`end_date` {dates['end_date']} is in the future (today is {local_today} in "
                f"{tz_name}): use today or earlier, or leave it out to mean today"
            )
    return problems


def _event_name_problems(names: object, reserved: frozenset[str]) -> list[str]:
    if not isinstance(names, list):
        return []
    if not names:
        return [
            '`event_names` is empty: list at least one event, e.g. ["App Launched"], or leave '
            "it out to export every event"
        ]
    problems = _not_exportable("event_names", names)
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or name in NOT_EXPORTABLE_EVENTS:
            continue
        stream = stream_name_for(name)
        if not stream:
            problems.append(f"`event_names`: {name!r} has no letters or digits to name a stream")
        elif stream in reserved:
            problems.append(
                f"`event_names`: {name!r} maps to stream {stream!r}, a name the tap keeps for "
                "its own stream: leave event_names out (discovery names it differently)"
            )
        elif stream in seen:
            problems.append(
                f"`event_names`: {seen[stream]!r} and {name!r} both map to stream {stream!r}: "
                "remove one of them (or leave event_names out: discovery names both)"
            )
        else:
            seen[stream] = name
    return problems


def _profile_event_problems(names: object) -> list[str]:
    if not isinstance(names, list):
        return []
    if not names:
        return [
            "`profile_event_names` is empty: list the events whose users to load, e.g. "
            '["App Launched"], or leave it out for no profiles stream'
        ]
    return _not_exportable("profile_event_names", names)


def _not_exportable(setting: str, names: list[Any]) -> list[str]:
    return [
        f"`{setting}`: CleverTap does not export {name!r} through its API: remove it "
        "(use CleverTap's S3/GCP export or the dashboard for Notification events)"
        for name in names
        if name in NOT_EXPORTABLE_EVENTS
    ]


def _url_problems(config: Mapping[str, Any]) -> list[str]:
    url = config.get("api_url")
    if url is None:
        return []
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"`api_url` {url!r} is not a URL: use e.g. https://in1.api.clevertap.com"]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [
            f"`api_url` {url!r} uses plain http to a non-local host, which would send the "
            "passcode in clear: use https (plain http is allowed only for loopback hosts)"
        ]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
