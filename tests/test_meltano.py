"""The tap under Meltano: `meltano run` into target-jsonl and target-duckdb against the
sandbox, every record checked by event_id (and content) against what the tap emits."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.sandbox import SandboxData, SandboxServer
from tests.helpers import (
    REPO,
    capture_output,
    content_multiset,
    ecosystem_tool,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
)

STREAMS = {"app_launched": "App Launched", "charged": "Charged"}
# The sandbox environment of meltano.yml: no event_names, profiles of Charged, catalogs, the
# campaign family.
DISCOVERED = {
    "profile_event_names": ["Charged"],
    "include_catalog_streams": True,
    "include_campaign_streams": True,
    "include_event_counts": True,
}
KEYS = {
    "profiles": "clevertap_id",
    "event_schema": "name",
    "user_properties": "name",
    "campaigns": "id",
    "campaign_reports": "id",
    "message_reports": "message_id",
    "content_blocks": "id",
    "category_groups": "key",
}
DUCKDB_PYTHON = REPO / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"


@dataclass
class Meltano:
    bin: str
    env: dict[str, str]
    sandbox: SandboxServer
    work: Path

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.bin, *args],
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        capture_output(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def state(self, state_id: str) -> dict[str, Any]:
        out = self("state", "get", state_id).stdout
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def duckdb(self, sql: str, database: Path) -> list[dict[str, Any]]:
        script = (
            "import duckdb, json, sys\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "cur = con.execute(sys.argv[2])\n"
            "names = [d[0] for d in cur.description]\n"
            "print(json.dumps([dict(zip(names, r)) for r in cur.fetchall()], default=str))\n"
        )
        result = subprocess.run(
            [str(DUCKDB_PYTHON), "-c", script, str(database), sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meltano]:
    binary = ecosystem_tool("MELTANO_BIN")
    work = tmp_path_factory.mktemp("meltano")
    (work / "jsonl").mkdir()
    with SandboxServer(SandboxData(events_per_day=30)) as sandbox:
        env = {
            **os.environ,
            # A state database of its own: every test session starts without state.
            "MELTANO_DATABASE_URI": f"sqlite:///{work}/meltano.db",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "CLEVERTAP_SANDBOX_URL": sandbox.url,
            "TARGET_JSONL_DESTINATION_PATH": str(work / "jsonl"),
            "TARGET_DUCKDB_FILEPATH": str(work / "events.duckdb"),
        }
        project = Meltano(binary, env, sandbox, work)
        project("install")
        yield project


def tap_records(meltano: Meltano, **overrides: Any) -> dict[str, list[dict[str, Any]]]:
    """What the tap itself emits for the sandbox environment's settings, per stream."""
    config = make_config(meltano.sandbox, batch_size=5000, **overrides)
    run = run_tap(config)
    return {stream: run.records(stream) for stream in STREAMS}


def test_meltano_run_into_target_jsonl_delivers_every_record(meltano: Meltano) -> None:
    meltano("run", "tap-clevertap", "target-jsonl")
    emitted = tap_records(meltano)
    for stream, event_name in STREAMS.items():
        lines = (meltano.work / "jsonl" / f"{stream}.jsonl").read_text().splitlines()
        landed = [json.loads(line) for line in lines]
        assert sorted(r["event_id"] for r in landed) == sorted(
            r["event_id"] for r in emitted[stream]
        )
        expected = content_multiset(expected_rows(meltano.sandbox, event_name))
        assert content_multiset([raw_view(r) for r in landed]) == expected


def test_meltano_run_into_duckdb_then_an_incremental_rerun(meltano: Meltano) -> None:
    database = meltano.work / "events.duckdb"
    meltano("run", "tap-clevertap", "target-duckdb")
    # What the tap emits without event_names: every exportable event, profiles, catalogs.
    config = make_config(meltano.sandbox, batch_size=5000, **DISCOVERED)
    config.pop("event_names")
    run = run_tap(config)
    streams = {m["stream"] for m in run.messages if m["type"] == "SCHEMA"} - {"event_counts"}
    event_streams = streams - set(KEYS)
    assert len(event_streams) == len(meltano.sandbox.data.catalog) == 8
    assert set(KEYS) <= streams
    for stream in sorted(streams):
        key = KEYS.get(stream, "event_id")
        rows = meltano.duckdb(f"select {key} from clevertap.{stream}", database)
        # Compared key by key: a target that lost a row (as target-duckdb 0.8 does with
        # duckdb >= 1.3) fails here. Profiles upsert on clevertap_id: one row per user.
        landed = sorted(r[key] for r in rows)
        emitted = [r[key] for r in run.records(stream)]
        assert landed == (sorted(emitted) if key == "event_id" else sorted(set(emitted)))
        assert landed, stream
    # One count per event and day, equal to what landed (keyed on event_name and day).
    counts = meltano.duckdb(
        "select event_name, day, clevertap_count, exported_count from clevertap.event_counts",
        database,
    )
    assert len(counts) == len(event_streams) * 7
    assert all(c["clevertap_count"] == c["exported_count"] for c in counts)
    assert len({(c["event_name"], c["day"]) for c in counts}) == len(counts)
    state = meltano.state("sandbox:tap-clevertap-to-target-duckdb")
    assert state["singer_state"]["bookmarks"]["charged"] == {"window_to": 20240107}
    assert state["singer_state"]["bookmarks"]["profiles"] == {"window_to": 20240107}

    meltano.sandbox.reset()
    second = meltano("run", "tap-clevertap", "target-duckdb")
    # Incremental: only the lookback day was asked for, and nothing doubled (upsert).
    exports = ("/1/events.json", "/1/profiles.json")
    posts = [r for r in meltano.sandbox.requests if r["method"] == "POST" and r["path"] in exports]
    assert sorted((p["path"], p["event_name"], p["day_from"], p["day_to"]) for p in posts) == [
        *sorted(("/1/events.json", e, 20240107, 20240107) for e in meltano.sandbox.data.catalog),
        ("/1/profiles.json", "Charged", 20240107, 20240107),
    ]
    assert "reading 2024-01-07..2024-01-07" in second.stderr
    for stream in event_streams:
        rows = meltano.duckdb(f"select count(*) as n from clevertap.{stream}", database)
        assert rows[0]["n"] == len(run.records(stream))
    # Content blocks: only those changed since the bookmark were asked for (none here).
    blocks = [r for r in meltano.sandbox.requests if r["path"] == "/v1/contentBlock/list"]
    assert [("updatedFrom" in r["query"], "createdAtFrom" in r["query"]) for r in blocks] == [
        (True, False),
        (False, True),
    ]
    for stream in set(KEYS) - {"profiles", "event_schema", "user_properties"}:
        rows = meltano.duckdb(f"select count(*) as n from clevertap.{stream}", database)
        assert rows[0]["n"] == len(run.records(stream)), stream


def test_flattened_load_into_duckdb_keeps_every_key(meltano: Meltano) -> None:
    database = meltano.work / "flat.duckdb"
    meltano(
        "run",
        "--full-refresh",
        "tap-clevertap",
        "target-duckdb",
        TAP_CLEVERTAP_FLATTENING_ENABLED="true",
        TAP_CLEVERTAP_FLATTENING_MAX_DEPTH="1",
        TAP_CLEVERTAP_INCLUDE_PROFILE_FIELDS="true",
        TAP_CLEVERTAP_EVENT_NAMES='["App Launched"]',
        TARGET_DUCKDB_FILEPATH=str(database),
    )
    emitted = tap_records(meltano, include_profile_fields=True, event_names=["App Launched"])
    rows = {
        r["event_id"]: r for r in meltano.duckdb("select * from clevertap.app_launched", database)
    }
    raw_by_id = {r["event_id"]: r for r in emitted["app_launched"]}
    assert set(rows) == set(raw_by_id)
    for event_id, raw in raw_by_id.items():
        row = {k.lower(): v for k, v in rows[event_id].items()}
        # Every nested value arrived: declared keys as columns, open objects as JSON columns,
        # keys the schema does not list in the _sdc_extra JSON columns.
        landed_profile = {
            key.removeprefix("profile__"): value
            for key, value in row.items()
            if key.startswith("profile__") and value is not None and key != "profile___sdc_extra"
        }
        if row.get("profile___sdc_extra"):
            landed_profile.update(json.loads(row["profile___sdc_extra"]))
        expected_profile = {k.lower(): v for k, v in raw["profile"].items()}
        landed_profile = {k.lower(): v for k, v in landed_profile.items()}
        for key in ("profiledata", "all_identities"):
            if key in landed_profile:
                landed_profile[key] = json.loads(landed_profile[key])
        assert landed_profile == expected_profile
        assert json.loads(row["event_props"]) == raw["event_props"]


def test_a_stream_map_drops_profile_email(meltano: Meltano) -> None:
    maps = {"app_launched": {"profile": "{k: v for k, v in profile.items() if k != 'email'}"}}
    records = run_tap(make_config(meltano.sandbox, stream_maps=maps)).records("app_launched")
    assert records
    assert all("email" not in r["profile"] for r in records)
    assert any("objectId" in r["profile"] for r in records)


def test_groups_of_event_names_keep_their_own_state(meltano: Meltano) -> None:
    for group, names in (("group-a", '["App Launched"]'), ("group-b", '["Charged"]')):
        meltano(
            "run",
            "--state-id-suffix",
            group,
            "tap-clevertap",
            "target-jsonl",
            TAP_CLEVERTAP_EVENT_NAMES=names,
        )
    a = meltano.state("sandbox:tap-clevertap-to-target-jsonl:group-a")["singer_state"]
    b = meltano.state("sandbox:tap-clevertap-to-target-jsonl:group-b")["singer_state"]
    # (Each group also carries the environment's profiles, content_blocks and event_counts.)
    shared = {"profiles", "content_blocks", "event_counts"}
    assert {s for s, v in a["bookmarks"].items() if v and s not in shared} == {"app_launched"}
    assert {s for s, v in b["bookmarks"].items() if v and s not in shared} == {"charged"}


def test_a_backfill_with_its_own_state_id_leaves_the_bookmark_alone(meltano: Meltano) -> None:
    main_id = "sandbox:tap-clevertap-to-target-jsonl"
    meltano("run", "tap-clevertap", "target-jsonl")
    before = meltano.state(main_id)
    meltano.sandbox.reset()
    meltano(
        "el",
        "tap-clevertap",
        "target-jsonl",
        "--state-id",
        "backfill-2024-01-02",
        TAP_CLEVERTAP_START_DATE="2024-01-02",
        TAP_CLEVERTAP_END_DATE="2024-01-03",
    )
    days = sorted(
        {
            (p["day_from"], p["day_to"])
            for p in meltano.sandbox.requests
            if p["method"] == "POST" and p["path"] == "/1/events.json"
        }
    )
    assert days == [(20240102, 20240102), (20240103, 20240103)]
    assert meltano.state(main_id) == before
