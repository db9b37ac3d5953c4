"""The project's settings, with `validate scripts` asked to replay on both databases."""

from tradingbot_site.settings import *  # noqa: F403

TBMIGRATE_VALIDATE_VENDORS = ["postgresql", "sqlite"]
