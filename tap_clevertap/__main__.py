"""`python -m tap_clevertap` runs the tap's command line."""

from tap_clevertap.tap import TapClevertap

TapClevertap.cli()
