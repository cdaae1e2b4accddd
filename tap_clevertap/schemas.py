"""The JSON schemas of the records: events, profiles and schema catalog items.

Every object stays open (`additionalProperties`): CleverTap adds keys the reference does not
list (`df`, `badKs`, `push_token`, ...), and those must reach the target unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

_ANY_JSON: dict[str, Any] = {}

# Objects whose keys are anybody's (event properties, custom profile fields) are declared
# without a `properties` key: with flattening on, the SDK turns such an object into one JSON
# column, where an empty `properties` would make it vanish from SCHEMA while its flattened
# keys still appear in RECORDs (and targets drop them).
OPEN_OBJECT = th.CustomType({"type": ["object", "null"], "additionalProperties": True})

# With flattening on, keys the schema does not declare are folded into this open object at
# their level (`_sdc_extra`, `profile___sdc_extra`, ...): a flattened SCHEMA cannot list them.
EXTRA_KEY = "_sdc_extra"


def _app_fields(setting: str) -> list[th.Property[Any]]:
    """The device fields `app=true` adds (`setting` turns it on)."""
    return [
        th.Property(name, th.StringType, description=setting)
        for name in ("os_version", "app_version", "make", "model")
    ]


# `events=true`: {event name: {count, first_seen, last_seen}}, the user's lifetime summary.
EVENT_SUMMARY = th.CustomType(
    {
        "type": ["object", "null"],
        "additionalProperties": {
            "type": ["object", "null"],
            "properties": {
                "count": {"type": ["integer", "null"]},
                "first_seen": {
                    "type": ["integer", "null"],
                    "description": "Unix time (seconds) of the user's first such event",
                },
                "last_seen": {
                    "type": ["integer", "null"],
                    "description": "Unix time (seconds) of the user's last such event",
                },
            },
            "additionalProperties": True,
        },
    }
)

PROFILE = th.ObjectType(
    th.Property("objectId", th.StringType, description="CleverTap ID of the device/user"),
    th.Property("platform", th.StringType),
    th.Property("email", th.StringType),
    th.Property("identity", th.StringType, description="Your own user id; may be absent"),
    th.Property("id", th.IntegerType),
    th.Property("name", th.StringType),
    th.Property("phone", th.IntegerType, description="CleverTap sends phone numbers as integers"),
    th.Property("all_identities", th.ArrayType(th.CustomType(_ANY_JSON))),
    th.Property("push_token", th.StringType),
    th.Property(
        "profileData",
        OPEN_OBJECT,
        description="Custom profile properties (include_profile_fields)",
    ),
    th.Property(
        "events",
        EVENT_SUMMARY,
        description="Lifetime summary per event name (include_event_summary)",
    ),
    *_app_fields("include_app_fields"),
    additional_properties=True,
)

SESSION_PROPS = th.ObjectType(
    th.Property("utm_source", th.StringType),
    th.Property("utm_medium", th.StringType),
    th.Property("utm_campaign", th.StringType),
    th.Property("session_source", th.StringType),
    th.Property("session_referrer", th.StringType),
    additional_properties=True,
)

EVENT_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "event_id",
        th.StringType,
        required=True,
        description="Deterministic key: SHA-256 of the event's canonical form (see README)",
    ),
    th.Property("event_name", th.StringType, required=True),
    th.Property(
        "ts",
        th.IntegerType,
        description="CleverTap's timestamp, yyyyMMddHHmmss in the account's time zone",
    ),
    th.Property("event_time", th.DateTimeType, description="`ts` as an ISO-8601 UTC time"),
    th.Property(
        "profile",
        PROFILE,
        description="The user as they are at export time, not at the time of the event",
    ),
    th.Property("event_props", OPEN_OBJECT),
    th.Property("session_props", SESSION_PROPS),
    additional_properties=True,
).to_dict()


DEVICE = th.ObjectType(
    th.Property("platform", th.StringType),
    th.Property("objectId", th.StringType, description="CleverTap ID of this device"),
    th.Property("push_token", th.StringType),
    *_app_fields("profiles_include_app_fields"),
    additional_properties=True,
)

PROFILE_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "clevertap_id",
        th.StringType,
        required=True,
        description=(
            "The key: `objectId`, else the first `platformInfo[].objectId`. A CleverTap ID "
            "is device-scoped; `identity` is the person"
        ),
    ),
    th.Property(
        "window_to",
        th.IntegerType,
        required=True,
        description="Last day (YYYYMMDD) of the export window the profile was read in",
    ),
    th.Property("objectId", th.StringType, description="As sent; missing on some profiles"),
    th.Property("identity", th.StringType, description="Your own user id; may be absent"),
    th.Property("name", th.StringType),
    th.Property("email", th.StringType),
    th.Property("phone", th.CustomType({"type": ["string", "integer", "null"]})),
    th.Property("all_identities", th.ArrayType(th.CustomType(_ANY_JSON))),
    th.Property("push_token", th.StringType),
    th.Property(
        "profileData",
        OPEN_OBJECT,
        description="Custom profile properties (profiles_include_profile_fields)",
    ),
    th.Property(
        "events",
        EVENT_SUMMARY,
        description="Lifetime summary per event name (profiles_include_event_summary)",
    ),
    th.Property("platformInfo", th.ArrayType(DEVICE), description="The user's devices"),
    additional_properties=True,
).to_dict()
PROFILE_SCHEMA["description"] = (
    "A CleverTap user profile as it is at export time (not at the time of the events), for "
    "each user who did one of profile_event_names in the window"
)

CATALOG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property("name", th.StringType, required=True, description="The item's name (the key)"),
    th.Property("item", OPEN_OBJECT, description="The whole item, as getSchema sent it"),
).to_dict()


def with_extra_columns(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` where every object with declared keys also declares EXTRA_KEY."""
    copy = dict(schema)
    if "properties" in schema:
        copy["properties"] = {
            name: with_extra_columns(sub) for name, sub in schema["properties"].items()
        }
        copy["properties"][EXTRA_KEY] = {"type": ["object", "null"], "additionalProperties": True}
    return copy


# --- the campaign family ------------------------------------------------------------------
# Little of these answers is documented: each schema declares what is known, and every other
# top-level key of an item is kept, as sent, in EXTRA_KEY (an open object: a JSON column in
# any target), so that targets that build columns from SCHEMA lose nothing.
_EXTRA = th.Property(
    EXTRA_KEY,
    OPEN_OBJECT,
    description="Every other key CleverTap sent for the item, as sent",
)
# A documented field whose type is not: text or a whole number, as sent. (A property with no
# `type` at all breaks targets that derive a column from it, such as target-duckdb.)
_AS_SENT = th.CustomType({"type": ["string", "integer", "null"]})


def _family_schema(description: str, *properties: th.Property[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = th.PropertiesList(
        *properties, _EXTRA, additional_properties=True
    ).to_dict()
    schema["description"] = description
    return schema


CAMPAIGN_SCHEMA = _family_schema(
    "A campaign created through CleverTap's API (targets/list.json); dashboard campaigns "
    "appear only in message_reports",
    th.Property("id", th.IntegerType, required=True, description="The campaign id (the key)"),
    th.Property("name", th.StringType),
    th.Property("scheduled_on", _AS_SENT, description="Scheduled start, as sent"),
    th.Property("status", _AS_SENT, description="As sent"),
)

CAMPAIGN_REPORT_SCHEMA = _family_schema(
    "The result of a campaign (targets/result.json): its `result` object plus `id`",
    th.Property("id", th.IntegerType, required=True, description="The campaign id (the key)"),
    th.Property("sent", th.IntegerType),
)

MESSAGE_REPORT_SCHEMA = _family_schema(
    "A message (campaign) report (message/report.json), as sent, with `message id` renamed",
    th.Property(
        "message_id",
        th.IntegerType,
        required=True,
        description='CleverTap\'s `"message id"` (with a space), renamed; the key',
    ),
    th.Property("message_name", th.StringType),
)

_TIME_DESCRIPTION = "{key} as an ISO-8601 UTC time (milliseconds)"
CONTENT_BLOCK_SCHEMA = _family_schema(
    "A content block (contentBlock/list), incremental on `modified_at`",
    th.Property("id", th.IntegerType, required=True, description="The block id (the key)"),
    th.Property("name", th.StringType),
    th.Property("type", th.StringType),
    th.Property("content", th.StringType),
    th.Property("createdAt", th.StringType, description="As sent"),
    th.Property("createdBy", th.StringType),
    th.Property("updatedAt", th.StringType, description="As sent; absent if never edited"),
    th.Property("updatedBy", th.StringType),
    th.Property(
        "created_at", th.DateTimeType, description=_TIME_DESCRIPTION.format(key="createdAt")
    ),
    th.Property(
        "updated_at", th.DateTimeType, description=_TIME_DESCRIPTION.format(key="updatedAt")
    ),
    th.Property(
        "modified_at",
        th.DateTimeType,
        description="updated_at, else created_at (a block never edited): the replication key",
    ),
)

CATEGORY_GROUP_SCHEMA = _family_schema(
    "A subscription (category) group (category-groups)",
    th.Property("key", th.IntegerType, required=True, description="The group's id (the key)"),
)


def folded(item: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """`item` with the top-level keys `schema` does not declare moved into EXTRA_KEY."""
    fold_unlisted(item, schema, EXTRA_KEY)
    return item


def fold_unlisted(node: dict[str, Any], schema: Mapping[str, Any], key: str) -> None:
    """Move the keys `schema` does not declare into `node[key]`, at every declared level.

    For flattened output, whose SCHEMA can only name declared keys.
    """
    declared = schema.get("properties")
    if not declared:
        return
    unlisted = [name for name in node if name not in declared]
    if unlisted:
        node[key] = {name: node.pop(name) for name in unlisted}
    for name, sub_schema in declared.items():
        value = node.get(name)
        if isinstance(value, dict) and sub_schema.get("properties"):
            fold_unlisted(value, sub_schema, key)


EVENT_COUNT_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property("event_name", th.StringType, required=True),
    th.Property(
        "day",
        th.DateType,
        required=True,
        description="The day (YYYY-MM-DD, in the account's time zone) both counts are of",
    ),
    th.Property(
        "clevertap_count",
        th.IntegerType,
        description="What CleverTap's count API says; null when the count failed",
    ),
    th.Property(
        "exported_count",
        th.IntegerType,
        required=True,
        description="The records the tap emitted for the event and day in this run (copies "
        "included)",
    ),
    th.Property(
        "checked_at", th.DateTimeType, required=True, description="When the run compared them"
    ),
).to_dict()
EVENT_COUNT_SCHEMA["description"] = (
    "CleverTap's own count of each event and day the run read, beside the tap's"
)
