"""`make demo`: Meltano runs tap-clevertap against the bundled sandbox into DuckDB, twice.

1. starts the CleverTap sandbox on a free port,
2. `meltano install`, then `meltano run tap-clevertap target-duckdb` (a week; no event_names:
   every event the project lists, the profiles of those who were Charged, the catalogs, and
   the campaign family: campaigns, campaign_reports, message_reports, content_blocks and
   category_groups),
3. prints what landed: rows per table, and a sample row,
4. runs again: incremental (only the lookback day is read) and no row doubles (upsert on
   event_id), then stops the sandbox. `clevertap.duckdb` stays for you to open.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tap_clevertap.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
DATABASE = ROOT / "events.duckdb"
DUCKDB_PYTHON = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
MELTANO = os.environ.get("MELTANO_BIN", "meltano")

QUERY_SCRIPT = """
import duckdb, sys
FAMILY = {
    "campaigns": ("id", "campaigns created through the API (scheduled start in range)"),
    "campaign_reports": ("id", "results of the campaigns that have one"),
    "message_reports": ("message_id", "message reports (API and dashboard campaigns)"),
    "content_blocks": ("id", "content blocks (incremental on modified_at)"),
    "category_groups": ("key", "subscription (category) groups"),
}
con = duckdb.connect(sys.argv[1], read_only=True)
tables = [t for (t,) in con.execute(
    "select table_name from information_schema.tables where table_schema = 'clevertap' "
    "order by table_name"
).fetchall()]
print(f"{'table':<26} {'rows':>6}  what")
for table in tables:
    columns = {c for (c,) in con.execute(
        "select column_name from information_schema.columns "
        f"where table_schema = 'clevertap' and table_name = '{table}'"
    ).fetchall()}
    if "event_id" in columns:
        rows, ids, first, last, name = con.execute(
            f"select count(*), count(distinct event_id), min(ts) // 1000000, "
            f"max(ts) // 1000000, min(event_name) from clevertap.{table}"
        ).fetchone()
        what = f"{name!r} events {first}..{last}, {ids} distinct event_id"
    elif table == "event_counts":
        rows, differ = con.execute(
            "select count(*), count(*) filter (where clevertap_count is distinct from "
            "exported_count) from clevertap.event_counts"
        ).fetchone()
        what = f"CleverTap's count beside the tap's per event and day, {differ} day(s) differ"
    elif table in FAMILY:
        key, what = FAMILY[table]
        rows, ids = con.execute(
            f"select count(*), count(distinct {key}) from clevertap.{table}"
        ).fetchone()
        what = f"{what}, {ids} distinct {key}"
    elif "clevertap_id" in columns:
        rows, ids = con.execute(
            f"select count(*), count(distinct clevertap_id) from clevertap.{table}"
        ).fetchone()
        what = f"profiles, {ids} distinct clevertap_id"
    else:
        rows, = con.execute(f"select count(*) from clevertap.{table}").fetchone()
        what = "schema catalog items (getSchema)"
    print(f"{table:<26} {rows:>6}  {what}")
if len(sys.argv) > 2:
    cur = con.execute(
        "select event_id, event_name, event_time, ts, profile, event_props, session_props "
        "from clevertap.charged order by ts limit 1"
    )
    names = [d[0] for d in cur.description]
    print("sample row (clevertap.charged):")
    for name, value in zip(names, cur.fetchone()):
        print(f"  {name:<14} {str(value)[:110]}")
"""


def meltano(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    (WORK / "meltano.log").open("a").write(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"meltano {' '.join(args)} failed; see {WORK / 'meltano.log'}")
    return result.stderr


def progress(log: str) -> None:
    """Each stream's last window, campaigns without a result, and the tap's warnings (once
    each), from Meltano's log."""
    shown = set()
    for line in log.splitlines():
        if "tap-clevertap" not in line:
            continue
        text = line.split("tap-clevertap", 1)[1].strip()
        last_window = re.search(r" done \((\d+)/\1\)", text)
        noted = last_window or "without a result yet" in text or "warning" in line.lower()
        if noted and text not in shown:
            shown.add(text)
            print("  " + text)


def show(sample: bool) -> None:
    args = [str(DUCKDB_PYTHON), "-c", QUERY_SCRIPT, str(DATABASE)] + (["sample"] if sample else [])
    subprocess.run(args, check=True)


def main() -> None:
    # A fresh start every time: its own state database, no DuckDB file from before.
    subprocess.run(["rm", "-rf", str(WORK), str(DATABASE)], check=True)
    WORK.mkdir()
    sandbox = SandboxProcess()
    url = sandbox.url
    env = {
        **os.environ,
        "CLEVERTAP_SANDBOX_URL": url,
        "MELTANO_DATABASE_URI": f"sqlite:///{WORK}/meltano.db",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    try:
        print(f"CleverTap sandbox on {url}; Meltano's log in {WORK / 'meltano.log'}")
        print("meltano install ...")
        meltano("install", env=env)
        print("\n== meltano run tap-clevertap target-duckdb (first run: 2024-01-01..07) ==")
        progress(meltano("run", "tap-clevertap", "target-duckdb", env=env))
        show(sample=True)
        print("\n== the same command again: incremental ==")
        progress(meltano("run", "tap-clevertap", "target-duckdb", env=env))
        show(sample=False)
        print(f"\nDuckDB file: {DATABASE} (schema clevertap); open it with the duckdb CLI.")
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
