from __future__ import annotations

from django.apps import AppConfig


class MigratorConfig(AppConfig):
    name = "migrator"
    verbose_name = "TradingBot migrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from migrator import checks as migrator_checks

        # Reads settings only: cheap enough for every manage.py command.
        checks.register(migrator_checks.database_urls, "tbmigrate")
        # Connects to the database: `check --deploy` only (see migrator/checks.py).
        checks.register(migrator_checks.migrations, "tbmigrate", checks.Tags.database, deploy=True)
