"""The JSON schema of one exported event, from CleverTap's Event object.

Every object stays open (`additionalProperties`): CleverTap adds keys the reference does not
list (`df`, `badKs`, `push_token`, ...), and those must reach the target unchanged.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

_ANY_JSON: dict[str, Any] = {}

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
        th.ObjectType(additional_properties=True),
        description="Custom profile properties (include_profile_fields)",
    ),
    th.Property("os_version", th.StringType, description="include_app_fields"),
    th.Property("app_version", th.StringType, description="include_app_fields"),
    th.Property("make", th.StringType, description="include_app_fields"),
    th.Property("model", th.StringType, description="include_app_fields"),
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
    th.Property("event_props", th.ObjectType(additional_properties=True)),
    th.Property("session_props", SESSION_PROPS),
    additional_properties=True,
).to_dict()
