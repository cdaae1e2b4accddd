"""The ceiling: a plain script that follows CleverTap's cursors and prints RECORD lines.

No record shaping, no state, no schema: the upper bound for the tap's throughput.
`--parse-only` stops after parsing each page (the fetch-and-parse rate of the sandbox).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

import orjson
import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--parse-only", action="store_true")
    args = parser.parse_args()
    config = json.loads(open(args.config).read())  # noqa: SIM115
    session = requests.Session()
    headers = {
        "X-CleverTap-Account-Id": config["account_id"],
        "X-CleverTap-Passcode": config["passcode"],
        "Content-Type": "application/json",
    }
    url = config["api_url"] + "/1/events.json"
    out = sys.stdout.buffer
    day = dt.date.fromisoformat(config["start_date"])
    end = dt.date.fromisoformat(config["end_date"])
    while day <= end:
        for name in config["event_names"]:
            stream = name.lower().replace(" ", "_")
            n = int(day.strftime("%Y%m%d"))
            body = {"event_name": name, "from": n, "to": n}
            # The same flags as the tap sends with its defaults (off unless configured).
            flags = {
                flag: "true" if config.get(setting) else "false"
                for flag, setting in (
                    ("app", "include_app_fields"),
                    ("events", "include_event_summary"),
                    ("profile", "include_profile_fields"),
                )
            }
            reply = session.post(
                url,
                params={"batch_size": config.get("batch_size", 5000), **flags},
                json=body,
                headers=headers,
            )
            cursor = orjson.loads(reply.content)["cursor"]
            while cursor:
                page = orjson.loads(session.get(f"{url}?cursor={cursor}", headers=headers).content)
                if page.get("status") != "success":
                    continue  # code 2: ask again
                cursor = page.get("next_cursor")
                if args.parse_only:
                    continue
                for record in page.get("records") or []:
                    out.write(
                        orjson.dumps({"type": "RECORD", "stream": stream, "record": record}) + b"\n"
                    )
        day += dt.timedelta(days=1)
    out.flush()


if __name__ == "__main__":
    main()
