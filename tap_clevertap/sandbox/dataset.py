"""The sandbox's seeded event data: what a CleverTap account would hold.

Everything is derived from (seed, event name, day), so two processes with the same seed serve
the same events, and tests can compute the ground truth without asking the server.
This module shares no code with the tap's client on purpose: if both read the wire format
from one helper, a misunderstanding of the API would pass every test.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import uuid
from dataclasses import dataclass, field

# From CleverTap's Get Events page: these cannot be exported through the API. Deliberately
# a copy of the tap's own list: the sandbox shares no code with the client it tests.
NOT_EXPORTABLE = frozenset(
    {
        "Notification Sent",
        "Notification Bounce",
        "Notification Viewed",
        "Notification Control Group",
        "Notification Rendered",
        "Notification System Control Group",
    }
)

# Events this simulated account has and can export. getSchema also lists the Notification
# events (which the API refuses to export); any other name is an "Invalid event".
DEFAULT_CATALOG = (
    "App Launched",
    "Charged",
    "Product Viewed",
    "App Installed",
    "UTM Visited",
    "Added To Cart",
    "Añadir al carrito",
    "ऐप खोला",  # Hindi ("app opened"): no Latin letters to name a stream with
)
LISTED_NOT_EXPORTABLE = ("Notification Sent", "Notification Viewed")
USER_PROPERTIES = (
    "Name",
    "Email",
    "Phone",
    "Identity",
    "favoriteColor",
    "Customer Type",
    "preferences",
    "score",
)

_NAMES = ["Ana Souza", "Zoë Ångström", "李雷", "Jörg Müller", "Priya Nair", "O'Brien", "Émile"]
_PLATFORMS = ["Web", "Android", "iOS"]
_COLORS = ["blue", "green", "red", "çéleste"]
_SOURCES = ["Direct", "Search", "Social", "Email", "Batch", "Others"]


@dataclass(frozen=True)
class User:
    """One simulated user; `version` changes what the export shows, not the user."""

    object_id: str
    numeric_id: int
    platform: str
    identity: str | None
    name: str | None
    email: str | None
    phone: int | None
    color: str
    os_version: str
    app_version: str
    make: str
    model: str
    second_device: str | None  # the objectId of a second device, if the user has one
    # Profiles of users who never logged in on the web SDK come without a top-level objectId
    # (it is only in `platformInfo`); a few have no objectId at all.
    top_level_id: bool
    any_id: bool


@dataclass
class SandboxData:
    """A deterministic account: `events(name, day)` always returns the same events."""

    seed: int = 7
    events_per_day: int = 40
    timezone: str = "UTC"
    catalog: tuple[str, ...] = DEFAULT_CATALOG
    # Bumping this changes email, profileData and app fields in every export, as real
    # profiles change between exports; the events themselves stay the same.
    profile_version: int = 0
    users: list[User] = field(init=False)

    def __post_init__(self) -> None:
        """Make the account's users from the seed."""
        rng = random.Random(f"users|{self.seed}")
        self.users = [self._make_user(rng, i) for i in range(60)]

    @staticmethod
    def _make_user(rng: random.Random, i: int) -> User:
        name = rng.choice(_NAMES) if rng.random() < 0.85 else None
        return User(
            object_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            numeric_id=1000 + i,
            platform=rng.choice(_PLATFORMS),
            identity=str(5550000000 + i) if rng.random() < 0.7 else None,
            name=name,
            email=f"user{i}@example.com" if rng.random() < 0.8 else None,
            phone=919800000000 + i if rng.random() < 0.5 else None,
            color=rng.choice(_COLORS),
            os_version=rng.choice(["14", "17.4", "13.1"]),
            app_version=rng.choice(["3.2.1", "3.3.0"]),
            make=rng.choice(["Google", "Apple", "Samsung"]),
            model=rng.choice(["Pixel 8", "iPhone15,2", "SM-S911B"]),
            # From a generator of its own: the users' other fields stay what they were.
            second_device=(
                str(uuid.UUID(int=random.Random(f"device|{i}").getrandbits(128), version=4))
                if i % 6 == 1
                else None
            ),
            top_level_id=i % 7 != 3,
            any_id=i % 29 != 28,
        )

    def exportable(self, event_name: str) -> bool:
        """Whether CleverTap lets this event be exported through the API."""
        return event_name not in NOT_EXPORTABLE

    def has_event(self, event_name: str) -> bool:
        """Whether the project has this event at all."""
        return event_name in self.catalog

    def schema_events(self) -> list[dict[str, object]]:
        """The `events` items of getSchema: every event the project has, exportable or not.

        Only `name` is confirmed on the live API; `properties` stands in for the rest.
        """
        return [
            {"name": name, "properties": [{"name": "CT Source"}, {"name": "CT Session Id"}]}
            for name in (*self.catalog, *LISTED_NOT_EXPORTABLE)
        ]

    def user_properties(self) -> list[dict[str, object]]:
        """The `userProperties` items of getSchema."""
        return [{"name": name} for name in USER_PROPERTIES]

    def day_count(self, event_name: str, day: dt.date) -> int:
        """How many events of this name happened on this (account-local) day."""
        if event_name not in self.catalog:
            return 0
        rng = random.Random(f"count|{self.seed}|{event_name}|{day.isoformat()}")
        spread = max(1, self.events_per_day // 4)
        return max(0, self.events_per_day + rng.randint(-spread, spread))

    def events(
        self,
        event_name: str,
        day: dt.date,
        *,
        app: bool = False,
        events: bool = False,
        profile: bool = False,
    ) -> list[dict[str, object]]:
        """The day's events in ts order, shaped as the Get Events API returns them."""
        count = self.day_count(event_name, day)
        rng = random.Random(f"events|{self.seed}|{event_name}|{day.isoformat()}")
        rows: list[dict[str, object]] = []
        seconds: list[int] = sorted(rng.randrange(86400) for _ in range(count))
        for second in seconds:
            if rows and rng.random() < 0.04:
                # An identical event: same user, same second, same properties.
                rows.append(copy.deepcopy(rows[-1]))
                continue
            user = rng.choice(self.users)
            local = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=second)
            row: dict[str, object] = {
                "profile": self._profile(user, app=app, events=events, profile=profile),
                "ts": int(local.strftime("%Y%m%d%H%M%S")),
                "event_props": _event_props(rng, event_name),
            }
            session = _session_props(rng)
            if session is not None:
                row["session_props"] = session
            rows.append(row)
        return rows

    def _profile(self, user: User, *, app: bool, events: bool, profile: bool) -> dict[str, object]:
        v = self.profile_version
        block: dict[str, object] = {"objectId": user.object_id, "platform": user.platform}
        if user.email:
            block["email"] = user.email if v == 0 else user.email.replace("@", f"+v{v}@")
        if user.identity:
            block["identity"] = user.identity
        block["id"] = user.numeric_id
        if user.name:
            block["name"] = user.name
        if user.phone is not None:
            block["phone"] = user.phone
        block["all_identities"] = [x for x in (user.identity, user.email) if x]
        if user.numeric_id % 5 == 0:
            block["push_token"] = f"fcm:{user.object_id[:8]}"
            block["df"] = {"s": 1, "u": v}
        if profile:
            block["profileData"] = self._profile_data(user)
        if events:
            block["events"] = self._event_summary(user)
        if app:
            block.update(self._app_fields(user))
        return block

    def _app_fields(self, user: User) -> dict[str, object]:
        """What `app=true` adds: the device's OS and app versions, make and model."""
        v = self.profile_version
        return {
            "os_version": user.os_version,
            "app_version": f"{user.app_version}.{v}" if v else user.app_version,
            "make": user.make,
            "model": user.model,
        }

    def _profile_data(self, user: User) -> dict[str, object]:
        v = self.profile_version
        return {
            "favoriteColor": user.color if v == 0 else f"{user.color}-{v}",
            "Customer Type": "Gold" if user.numeric_id % 3 == 0 else "Silver",
            "preferences": {"newsletter": user.numeric_id % 2 == 0, "tags": ["a", "b"]},
            "score": round(user.numeric_id * 0.37 + v, 2),
        }

    def _event_summary(self, user: User) -> dict[str, object]:
        """The user's lifetime summary per event: count, first_seen, last_seen (epoch s)."""
        rng = random.Random(f"summary|{self.seed}|{user.numeric_id}|{self.profile_version}")
        summary: dict[str, object] = {}
        for name in self.catalog:
            if rng.random() < 0.5:
                first = 1_600_000_000 + rng.randrange(10**7)
                summary[name] = {
                    "count": rng.randint(1, 500),
                    "first_seen": first,
                    "last_seen": first + rng.randrange(10**7),
                }
        return summary

    def window(
        self,
        event_name: str,
        first: dt.date,
        last: dt.date,
        *,
        app: bool = False,
        events: bool = False,
        profile: bool = False,
    ) -> list[dict[str, object]]:
        """All events of days first..last inclusive, in order."""
        rows: list[dict[str, object]] = []
        day = first
        while day <= last:
            rows.extend(self.events(event_name, day, app=app, events=events, profile=profile))
            day += dt.timedelta(days=1)
        return rows

    def profiles(
        self,
        event_name: str,
        first: dt.date,
        last: dt.date,
        *,
        app: bool = False,
        events: bool = False,
        profile: bool = False,
    ) -> list[dict[str, object]]:
        """The profiles of the users who did `event_name` on days first..last, once each.

        Shaped as the Get User Profiles API returns them, in the order of each user's first
        such event.
        """
        by_object_id = {user.object_id: user for user in self.users}
        seen: dict[str, User] = {}
        for row in self.window(event_name, first, last):
            block = row["profile"]
            assert isinstance(block, dict)
            object_id = str(block["objectId"])
            seen.setdefault(object_id, by_object_id[object_id])
        return [
            self._user_profile(user, app=app, events=events, profile=profile)
            for user in seen.values()
        ]

    def _user_profile(
        self, user: User, *, app: bool, events: bool, profile: bool
    ) -> dict[str, object]:
        v = self.profile_version
        record: dict[str, object] = {}
        if user.identity:
            record["identity"] = user.identity
        if user.name:
            record["name"] = user.name
        if user.email:
            record["email"] = user.email if v == 0 else user.email.replace("@", f"+v{v}@")
        if user.phone is not None:
            record["phone"] = user.phone
        if user.top_level_id and user.any_id:
            record["objectId"] = user.object_id
        record["all_identities"] = [x for x in (user.identity, user.email) if x]
        if profile:
            record["profileData"] = self._profile_data(user)
        if events:
            record["events"] = self._event_summary(user)
        devices = [user.object_id, user.second_device] if user.any_id else []
        platform_info: list[dict[str, object]] = []
        for number, object_id in enumerate(devices):
            if object_id is None:
                continue
            device: dict[str, object] = {
                "platform": user.platform if number == 0 else "Web",
                "objectId": object_id,
            }
            if user.numeric_id % 5 == 0:
                device["push_token"] = f"fcm:{object_id[:8]}"
            if app:
                device.update(self._app_fields(user))
            platform_info.append(device)
        record["platformInfo"] = platform_info
        return record


def _event_props(rng: random.Random, event_name: str) -> dict[str, object]:
    props: dict[str, object] = {
        "CT Source": rng.choice(["Mobile", "Web", "API"]),
        "CT Session Id": rng.randrange(10**9, 10**10),
    }
    if rng.random() < 0.8:
        props["CT App Version"] = rng.choice(["3.2.1", "3.3.0"])
    if event_name == "Charged":
        props["Amount"] = round(rng.uniform(1, 500), 2)
        props["Currency"] = rng.choice(["USD", "EUR", "INR"])
        props["Items"] = [
            {"Category": "Books", "Title": "Ünïcödé", "Quantity": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 2))
        ]
        props["Charged ID"] = rng.randrange(10**6)
    else:
        props["value"] = rng.choice(["pizza", "naïve café ☕", "", "données"])
        if rng.random() < 0.5:
            props["count"] = rng.randint(-5, 1000)
        if rng.random() < 0.4:
            props["flag"] = rng.random() < 0.5
        if rng.random() < 0.2:
            props["nothing"] = None
        if rng.random() < 0.5:
            props["price"] = rng.choice([0.1, 19.99, 1e-7, 12345678.125, 2.5e21, -0.5])
    if rng.random() < 0.3:
        props["when"] = f"$D_{1700000000 + rng.randrange(10**6)}"
    return props


def _session_props(rng: random.Random) -> dict[str, object] | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    source = rng.choice(_SOURCES)
    props: dict[str, object] = {"session_source": source}
    if source == "Others":
        props["session_referrer"] = "http://example.com/ref?q=ü"
    if roll > 0.6:
        props["utm_source"] = "Foo"
        props["utm_medium"] = "Bar"
        props["utm_campaign"] = "FooBar"
    return props
