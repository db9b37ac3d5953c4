"""tbmigrate's two tables: what is applied now, and the append-only audit log.

As yoyo keeps ``_yoyo_migration`` apart from ``_yoyo_log``, ``AppliedMigration`` holds
the current state (one row per applied or failed version) and ``AuditEvent`` every
thing that happened.  Only ``migrator.history`` writes either of them.
"""

from __future__ import annotations

from django.db import models

from migrator.states import RecordStatus


class AppliedMigration(models.Model):
    APPLIED = RecordStatus.APPLIED.value
    FAILED = RecordStatus.FAILED.value
    IN_PROGRESS = RecordStatus.IN_PROGRESS.value
    STATUS_CHOICES = [(APPLIED, "applied"), (FAILED, "failed"), (IN_PROGRESS, "in progress")]
    UP, DOWN = "up", "down"

    version = models.CharField(max_length=32, unique=True)
    sort_key = models.CharField(
        max_length=40,
        db_index=True,
        help_text="The version padded so that text order is semver order.",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the script when it ran.")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=APPLIED)
    applied_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    applied_by = models.CharField(max_length=150, blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="", help_text="Why a non-atomic step failed.")
    # The journal of a step that cannot roll back (atomic = False): written and committed
    # before the step runs, so a process that dies leaves the truth behind.
    direction = models.CharField(
        max_length=4, blank=True, default="", help_text="up or down, while in progress."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    progress = models.JSONField(
        default=dict, blank=True, help_text="How far an in-progress step got (batched_update)."
    )
    # What ran: the script file's bytes when it was applied, zlib-compressed.
    script_text = models.BinaryField(null=True, blank=True, editable=False)
    run_id = models.CharField(max_length=32, blank=True, default="", db_index=True)

    class Meta:
        db_table = "tbmigrate_applied_migration"
        ordering = ["sort_key"]
        verbose_name = "applied migration"

    def __str__(self) -> str:
        return f"{self.version} {self.name}"


class AuditEvent(models.Model):
    ACTIONS = [
        ("apply", "apply"),
        ("revert", "revert"),
        ("fake", "fake"),
        ("run", "run"),
        ("rollback", "rollback"),
        ("validate", "validate"),
        ("repair", "repair"),
        ("backup", "backup"),
        ("adopt", "adopt"),
    ]
    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    STARTED = "started"
    INTERRUPTED = "interrupted"
    OUTCOMES = [
        (SUCCESS, "success"),
        (FAILURE, "failure"),
        (REFUSED, "refused"),
        (STARTED, "started"),
        (INTERRUPTED, "interrupted"),
    ]

    timestamp = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=16, choices=ACTIONS)
    version = models.CharField(max_length=32, blank=True, default="")
    name = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=OUTCOMES)
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    statements = models.JSONField(default=list, blank=True, help_text="SQL the step executed.")
    details = models.JSONField(default=dict, blank=True)
    os_user = models.CharField("who", max_length=150, blank=True, default="")
    host = models.CharField("where", max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    database = models.CharField(max_length=500, blank=True, default="", help_text="Masked URL.")
    tool_version = models.CharField(max_length=32, blank=True, default="")
    run_id = models.CharField(
        max_length=32, blank=True, default="", db_index=True, help_text="One command's events."
    )

    class Meta:
        db_table = "tbmigrate_audit_event"
        ordering = ["-timestamp", "-id"]
        verbose_name = "audit event"

    def __str__(self) -> str:
        subject = f" {self.version}" if self.version else ""
        return f"{self.action}{subject}: {self.outcome}"
