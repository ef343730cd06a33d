"""From `audit:` settings to a ready (not yet started) AuditTrail, and the catalog auditors query."""

from __future__ import annotations

from gateway.audit.settings import AuditSettings
from gateway.audit.stores import AuditStore, open_store
from gateway.audit.trail import AuditTrail, TrailOptions
from gateway.metrics import Metrics

AUDIT_CATALOG = "gateway"  # reserved in config: no backend may take this name


def build_store(settings: AuditSettings) -> AuditStore:
    return open_store(settings.store, admin_url=settings.admin_store, timeout_seconds=settings.store_timeout_seconds)


def build_trail(settings: AuditSettings, metrics: Metrics) -> AuditTrail:
    options = TrailOptions(
        spool_dir=settings.spool_dir,
        on_failure=settings.on_failure,
        spool_max_bytes=settings.spool_max_bytes,
        batch_size=settings.batch_size,
        flush_interval_seconds=settings.flush_interval_seconds,
        checkpoint_records=settings.checkpoint_records,
        checkpoint_seconds=settings.checkpoint_seconds,
        redact_literals=settings.redact_literals,
        probe_interval_seconds=settings.probe_interval_seconds,
        probe_timeout_seconds=settings.probe_timeout_seconds,
    )
    return AuditTrail(store=build_store(settings), options=options, metrics=metrics)
