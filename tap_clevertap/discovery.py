"""Which streams exist and what they are called.

The tap's own streams, and one stream per configured event, or per event the project lists
less exclusions.

Stream names are stable whatever order getSchema lists the events in: a name depends only
on the event's own name and on which other names normalise to the same text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from tap_clevertap.errors import CleverTapError

# CleverTap's Get Events page: these events cannot be exported through the API.
NOT_EXPORTABLE_EVENTS = frozenset(
    {
        "Notification Sent",
        "Notification Bounce",
        "Notification Viewed",
        "Notification Control Group",
        "Notification Rendered",
        "Notification System Control Group",
    }
)

# The tap's own streams: no event stream may take these names.
PROFILES_STREAM = "profiles"
EVENT_SCHEMA_STREAM = "event_schema"
USER_PROPERTIES_STREAM = "user_properties"
CAMPAIGNS_STREAM = "campaigns"
CAMPAIGN_REPORTS_STREAM = "campaign_reports"
MESSAGE_REPORTS_STREAM = "message_reports"
CONTENT_BLOCKS_STREAM = "content_blocks"
CATEGORY_GROUPS_STREAM = "category_groups"
CAMPAIGN_FAMILY_STREAMS = (
    CAMPAIGNS_STREAM,
    CAMPAIGN_REPORTS_STREAM,
    MESSAGE_REPORTS_STREAM,
    CONTENT_BLOCKS_STREAM,
    CATEGORY_GROUPS_STREAM,
)
EVENT_COUNTS_STREAM = "event_counts"
RESERVED_STREAM_NAMES = frozenset({PROFILES_STREAM, EVENT_SCHEMA_STREAM, USER_PROPERTIES_STREAM})


def reserved_stream_names(config: Mapping[str, Any]) -> frozenset[str]:
    """The tap's own stream names for this config, which no event stream may take.

    The names of optional streams are reserved only when those streams are on, so that
    turning them on is the only thing that can rename an event stream called e.g.
    `campaigns`.
    """
    reserved = set(RESERVED_STREAM_NAMES)
    if config.get("include_campaign_streams"):
        reserved |= set(CAMPAIGN_FAMILY_STREAMS)
    if config.get("include_event_counts"):
        reserved.add(EVENT_COUNTS_STREAM)
    return frozenset(reserved)


def stream_name_for(event_name: str) -> str:
    """`App Launched` -> `app_launched`, `Product Viewed (Web)` -> `product_viewed_web`."""
    ascii_name = unicodedata.normalize("NFKD", event_name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")


@dataclass(frozen=True)
class EventStreamNames:
    """Event name -> stream name, and the names that had to be hashed."""

    streams: dict[str, str]
    hashed: list[str]


def discovered_events(items: Iterable[dict[str, Any]], exclude: Iterable[str]) -> list[str]:
    """The event names getSchema lists, less excluded ones and those CleverTap won't export.

    `exclude` holds exact names or shell-style patterns (`fnmatch.fnmatchcase`).

    Raises:
        CleverTapError: getSchema listed no event, or none is left to export.
    """
    names = list(dict.fromkeys(i["name"] for i in items if isinstance(i.get("name"), str)))
    if not [name for name in names if name]:
        raise CleverTapError(
            "CleverTap's getSchema listed no events for this project: check account_id and "
            "region/api_url, or set event_names"
        )
    patterns = list(exclude)
    kept = [
        name
        for name in names
        if name
        and name not in NOT_EXPORTABLE_EVENTS
        and not any(fnmatchcase(name, pattern) for pattern in patterns)
    ]
    if not kept:
        raise CleverTapError(
            f"none of the {len(names)} events getSchema lists is left to export once the "
            "events CleverTap does not export and exclude_event_names are left out: narrow "
            "exclude_event_names"
        )
    return kept


def hashed_stream_name(event_name: str) -> str:
    """`<normalised or "event">_<first 8 hex digits of SHA-256 of the UTF-8 name>`."""
    digest = hashlib.sha256(event_name.encode()).hexdigest()[:8]
    return f"{stream_name_for(event_name) or 'event'}_{digest}"


def stream_names_for(event_names: Iterable[str], reserved: frozenset[str]) -> EventStreamNames:
    """Stream names for discovered events.

    An event keeps its normalised name (`stream_name_for`) when that is non-empty, not one
    of the tap's own stream names (`reserved`), and no other listed event normalises to it;
    otherwise it gets `hashed_stream_name`.
    """
    names = list(event_names)
    normalised = {name: stream_name_for(name) for name in names}
    shared = Counter(normalised.values())
    streams: dict[str, str] = {}
    hashed: list[str] = []
    for name in names:
        plain = normalised[name]
        if plain and plain not in reserved and shared[plain] == 1:
            streams[name] = plain
        else:
            streams[name] = hashed_stream_name(name)
            hashed.append(name)
    return EventStreamNames(streams, hashed)
