"""The sandbox's campaigns, campaign results, message reports, content blocks and category groups.

One seeded data set, derived from (seed, day) like the events: campaigns created through the
API are scheduled on some days (in the past and in the future), each of their ids appears in
the message reports of its day beside the dashboard's own campaigns, and campaigns that have
not completed have no result yet. Content blocks can be edited and added while the server
runs (`edit_content_block`, `add_content_block`), as a user would in the dashboard.

Field names beyond those in `clevertap-more-apis.md` section 4 are this sandbox's guesses and
are marked as such: the tap keeps whatever it does not know in an open object.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from dataclasses import dataclass, field

_CHANNELS = ("push", "email", "sms", "inapp", "webhooks", "web_native_display")
_DELIVERIES = ("one_time", "action", "recurring", "api")
_NAMES = ("Welcome", "Winback", "Flash sale", "Cart reminder", "Señal ☕", "Weekly digest")
# A block counts as never edited when it has no updatedAt (the tap falls back to createdAt).
CONTENT_BLOCK_PAGE_MAX = 100


def utc_millis(moment: dt.datetime) -> str:
    """CleverTap's content-block time: ISO 8601 UTC with milliseconds (`...T12:00:00.000Z`)."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass
class Messaging:
    """Campaigns and the rest of the messaging side of a simulated account."""

    seed: int = 7
    # Chance that a day has an API campaign scheduled (then one or two).
    campaign_day_rate: float = 0.2
    content_block_count: int = 230
    today: dt.date = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date())
    _blocks: dict[int, dict[str, object]] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        """Make the account's content blocks from the seed."""
        rng = random.Random(f"blocks|{self.seed}")
        start = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
        self._blocks = {}
        for number in range(self.content_block_count):
            created = start + dt.timedelta(seconds=rng.randrange(500 * 86400), milliseconds=17)
            block: dict[str, object] = {
                "id": 5000 + number,
                "name": f"Block {number} {rng.choice(_NAMES)}",
                "type": rng.choice(["HTML", "Text", "Image"]),
                "content": f"<p>{rng.choice(_NAMES)} #{number}</p>",
                "createdAt": utc_millis(created),
                "createdBy": f"editor{number % 4}@example.com",
            }
            if rng.random() < 0.6:
                block["updatedAt"] = utc_millis(
                    created + dt.timedelta(seconds=rng.randrange(1, 90 * 86400))
                )
                block["updatedBy"] = f"editor{(number + 1) % 4}@example.com"
            self._blocks[int(block["id"])] = block  # type: ignore[call-overload]

    # --- campaigns (POST /1/targets/list.json, /1/targets/result.json) --------------------

    def campaigns(self, first: dt.date, last: dt.date) -> list[dict[str, object]]:
        """The API campaigns whose scheduled start falls on days first..last, in order."""
        rows: list[dict[str, object]] = []
        day = first
        while day <= last:
            rows.extend(self._campaigns_on(day))
            day += dt.timedelta(days=1)
        return rows

    def _campaigns_on(self, day: dt.date) -> list[dict[str, object]]:
        rng = random.Random(f"campaigns|{self.seed}|{day.isoformat()}")
        if rng.random() >= self.campaign_day_rate:
            return []
        rows = []
        for index in range(rng.randint(1, 2)):
            minute = rng.randrange(24 * 60)
            rows.append(
                {
                    "id": _campaign_id(day, index),
                    "name": f"{rng.choice(_NAMES)} {day.isoformat()}",
                    # Name from one client (claim), type unknown: here YYYYMMDDHHmm.
                    "scheduled_on": int(f"{day:%Y%m%d}{minute // 60:02d}{minute % 60:02d}"),
                    "status": self._status(day, rng),
                }
            )
        return rows

    def _status(self, day: dt.date, rng: random.Random) -> str:
        if day > self.today:
            return "scheduled"
        return "running" if rng.random() < 0.15 else "completed"

    def campaign_result(self, campaign_id: int) -> dict[str, object] | None:
        """The result of a campaign; None when it has not completed (no result yet).

        Raises:
            KeyError: no API campaign has this id.
        """
        day = _campaign_day(campaign_id)
        campaign = next((c for c in self._campaigns_on(day) if c["id"] == campaign_id), None)
        if campaign is None:
            raise KeyError(campaign_id)
        if campaign["status"] != "completed":
            return None
        rng = random.Random(f"result|{self.seed}|{campaign_id}")
        sent = rng.randint(50, 5000)
        viewed = rng.randint(0, sent)
        return {
            "sent": sent,
            "viewed": viewed,
            "clicked": rng.randint(0, viewed),
            "errors": rng.randint(0, 20),
            "platform": {"android": {"sent": sent // 2}, "ios": {"sent": sent - sent // 2}},
        }

    # --- message reports (POST /1/message/report.json) -------------------------------------

    def message_reports(self, first: dt.date, last: dt.date) -> list[dict[str, object]]:
        """Messages started on days first..last: every API campaign and the dashboard's own.

        The live key is `"message id"`, with a space.
        """
        rows: list[dict[str, object]] = []
        day = first
        while day <= last:
            rng = random.Random(f"messages|{self.seed}|{day.isoformat()}")
            ids = [int(c["id"]) for c in self._campaigns_on(day)]  # type: ignore[call-overload]
            if rng.random() < 0.3:
                ids.append(_campaign_id(day, 7))  # made in the dashboard: not in targets/list
            for message_id in ids:
                sent = rng.randint(10, 9000)
                rows.append(
                    {
                        "message id": message_id,
                        "message_name": f"{rng.choice(_NAMES)} {day.isoformat()}",
                        "channel": rng.choice(_CHANNELS),
                        "delivery": rng.choice(_DELIVERIES),
                        "status": "scheduled" if day > self.today else "completed",
                        "start_date": f"{day:%Y%m%d} {rng.randrange(24):02d}:00",
                        "sent": sent,
                        "viewed": rng.randint(0, sent),
                        "labels": ["sandbox"] if rng.random() < 0.5 else [],
                    }
                )
            day += dt.timedelta(days=1)
        return rows

    # --- content blocks (GET /v1/contentBlock/list) ---------------------------------------

    def content_blocks(
        self, *, updated_from: dt.datetime | None = None, created_from: dt.datetime | None = None
    ) -> list[dict[str, object]]:
        """Every block (copies), by id; filtered on `updatedAt` and/or `createdAt` (inclusive).

        A block never edited has no `updatedAt`, so `updated_from` does not match it.
        """
        with self._lock:
            blocks = [dict(block) for _, block in sorted(self._blocks.items())]
        if updated_from is not None:
            bound = utc_millis(updated_from)
            blocks = [b for b in blocks if str(b.get("updatedAt") or "") >= bound]
        if created_from is not None:
            bound = utc_millis(created_from)
            blocks = [b for b in blocks if str(b["createdAt"]) >= bound]
        return blocks

    def edit_content_block(self, block_id: int, when: dt.datetime) -> None:
        """Someone edits a block at `when`."""
        with self._lock:
            block = self._blocks[block_id]
            block["updatedAt"] = utc_millis(when)
            block["updatedBy"] = "editor9@example.com"
            block["content"] = f"<p>edited at {utc_millis(when)}</p>"

    def add_content_block(self, when: dt.datetime) -> int:
        """Someone creates a block at `when` (never edited since); its id."""
        with self._lock:
            block_id = max(self._blocks) + 1
            self._blocks[block_id] = {
                "id": block_id,
                "name": f"New block {block_id}",
                "type": "Text",
                "content": "new",
                "createdAt": utc_millis(when),
                "createdBy": "editor9@example.com",
            }
        return block_id

    # --- category groups (GET /category-groups) -------------------------------------------

    def category_groups(self) -> list[dict[str, object]]:
        """The subscription (category) groups; fields beyond `key` are guesses."""
        return [
            {"key": 1, "name": "Promotional", "channels": ["email", "push", "sms"]},
            {"key": 2, "name": "Transactional", "channels": ["email", "sms"], "default": True},
            {"key": 7, "name": "Newsletter ✉", "channels": ["email"], "description": None},
        ]


def _campaign_id(day: dt.date, index: int) -> int:
    """Ids like CleverTap's (10 digits); the day can be read back from the id."""
    return 1_400_000_000 + day.toordinal() * 10 + index


def _campaign_day(campaign_id: int) -> dt.date:
    return dt.date.fromordinal((campaign_id - 1_400_000_000) // 10)
