"""The export plan (`exports.ExportPlan`): order, first exports, accepted and forgotten
events, and which exports to open next, without threads or HTTP."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tap_clevertap.exports import ExportKey, ExportPlan, PlannedExport, StreamEvent

pytestmark = pytest.mark.unit

CLIENT = cast("Any", object())  # the plan never uses the client: it only hands it on


def export(stream: str, event: str, day: int) -> PlannedExport:
    return PlannedExport(ExportKey(stream, event, day, day), CLIENT, {"from": day})


# Two streams; `charged` has two events (as a profiles stream would).
PLAN = [
    export("app_launched", "App Launched", 1),
    export("app_launched", "App Launched", 2),
    export("app_launched", "App Launched", 3),
    export("profiles", "Charged", 1),
    export("profiles", "Nope", 1),
    export("profiles", "Charged", 2),
    export("profiles", "Nope", 2),
]
KEYS = [planned.key for planned in PLAN]


def keys(exports: list[PlannedExport]) -> list[ExportKey]:
    return [planned.key for planned in exports]


def test_before_any_cursor_only_each_event_s_first_export_opens() -> None:
    plan = ExportPlan(PLAN)
    assert keys(plan.to_open(KEYS[0], reading=0, limit=10)) == [KEYS[3], KEYS[4]]


def test_an_accepted_event_opens_its_later_exports_in_plan_order() -> None:
    plan = ExportPlan(PLAN)
    assert plan.accept(StreamEvent("app_launched", "App Launched"))
    assert not plan.accept(StreamEvent("app_launched", "App Launched"))  # once
    assert keys(plan.to_open(KEYS[0], reading=0, limit=10)) == KEYS[1:5]


def test_the_limit_counts_exports_already_being_read() -> None:
    plan = ExportPlan(PLAN)
    plan.accept(StreamEvent("app_launched", "App Launched"))
    assert keys(plan.to_open(KEYS[0], reading=0, limit=2)) == KEYS[1:3]
    assert keys(plan.to_open(KEYS[0], reading=1, limit=2)) == KEYS[1:2]
    assert plan.to_open(KEYS[0], reading=2, limit=2) == []


def test_opened_exports_are_not_opened_again() -> None:
    plan = ExportPlan(PLAN)
    plan.accept(StreamEvent("app_launched", "App Launched"))
    plan.opened(KEYS[1])
    assert keys(plan.to_open(KEYS[0], reading=0, limit=2)) == [KEYS[2], KEYS[3]]


def test_a_forgotten_event_is_never_opened_and_the_rest_keeps_its_order() -> None:
    plan = ExportPlan(PLAN)
    plan.forget(StreamEvent("profiles", "Nope"))
    plan.accept(StreamEvent("profiles", "Charged"))
    assert KEYS[4] not in plan
    assert keys(plan.to_open(KEYS[2], reading=0, limit=10)) == [KEYS[3], KEYS[5]]
    assert plan.is_last(KEYS[5])


def test_nothing_opens_after_an_unplanned_export_or_the_last() -> None:
    plan = ExportPlan(PLAN)
    assert plan.to_open(ExportKey("other", "x", 1, 1), reading=0, limit=10) == []
    assert plan.to_open(KEYS[-1], reading=0, limit=10) == []
    assert plan.is_last(KEYS[-1])
    assert not ExportPlan()
    assert not ExportPlan().is_last(KEYS[0])
