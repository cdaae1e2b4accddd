"""The Singer SDK's own tap test suite, run against a sandbox on loopback."""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from tap_clevertap.sandbox import SandboxData, SandboxServer
from tap_clevertap.tap import TapClevertap
from tests.helpers import make_config

# The suite's config is fixed when the class is built, so this sandbox starts at import.
_SANDBOX = SandboxServer(SandboxData(events_per_day=12)).start()
atexit.register(_SANDBOX.stop)

TestTapClevertap = get_tap_test_class(
    TapClevertap,
    config=make_config(
        _SANDBOX,
        event_names=["App Launched", "Charged", "Añadir al carrito"],
        end_date="2024-01-03",
        include_app_fields=True,
        include_profile_fields=True,
    ),
)
