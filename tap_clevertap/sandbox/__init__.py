"""A local simulator of CleverTap's read APIs, for tests, the demo and benchmarks."""

from tap_clevertap.sandbox.dataset import NOT_EXPORTABLE, SandboxData
from tap_clevertap.sandbox.messaging import Messaging
from tap_clevertap.sandbox.server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_PASSCODE,
    Fault,
    SandboxServer,
    SandboxSettings,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_PASSCODE",
    "NOT_EXPORTABLE",
    "Fault",
    "Messaging",
    "SandboxData",
    "SandboxServer",
    "SandboxSettings",
]
