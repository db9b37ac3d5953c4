from django.apps import AppConfig


class MigratorConfig(AppConfig):
    name = "migrator"
    verbose_name = "TradingBot migrations"
    default_auto_field = "django.db.models.BigAutoField"
