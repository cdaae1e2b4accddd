"""meltano.yml declares every setting the tap has, with the kind Meltano needs."""

from __future__ import annotations

import yaml

from tap_clevertap.config import CONFIG_SCHEMA, TAP_SETTINGS
from tests.helpers import REPO

KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "array": "array",
}


def test_every_tap_setting_is_declared_with_its_kind() -> None:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    tap = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-clevertap")
    declared = {s["name"]: s for s in tap["settings"]}
    for name in TAP_SETTINGS:
        prop = CONFIG_SCHEMA["properties"][name]
        assert name in declared, f"meltano.yml lacks setting {name}"
        kind = declared[name]["kind"]
        if prop.get("format") == "date":
            assert kind == "date_iso8601", name
        elif prop.get("enum"):
            assert kind == "options", name
        else:
            types = [prop["type"]] if isinstance(prop["type"], str) else prop["type"]
            json_type = next(t for t in types if t != "null")
            assert kind == KINDS[json_type], (name, kind)
    assert declared["passcode"].get("sensitive") is True
    # event_names is optional: without it the tap lists the project's events.
    assert tap["settings_group_validation"] == [["account_id", "passcode", "start_date"]]
    for loader in project["plugins"]["loaders"]:
        assert {"namespace", "pip_url", "executable"} <= set(loader)
