"""Every Prometheus metric the gateway exposes, named in one place.

One `Metrics` object per application (its own registry), so several gateways in one process (tests) never
share counters. Stages receive the object and touch only their own metrics.
"""

from __future__ import annotations

from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Info

T = TypeVar("T", bound="_Children")


class _Children:
    """`labels(...)` answered from a dict after the first call for a label set. prometheus_client checks the
    names and takes a lock on every call, and each query's end makes several; children are never removed
    here, so a child once made stays the one prometheus_client exports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._children: dict[tuple[object, ...], Any] = {}
        super().__init__(*args, **kwargs)

    def labels(self: T, *labelvalues: object, **labelkwargs: object) -> T:
        if labelkwargs:
            return super().labels(**labelkwargs)  # type: ignore[misc, no-any-return]
        child = self._children.get(labelvalues)
        if child is None:
            child = self._children[labelvalues] = super().labels(*labelvalues)  # type: ignore[misc]
        return child  # type: ignore[no-any-return]


class Counter(_Children, prometheus_client.Counter):
    pass


class Gauge(_Children, prometheus_client.Gauge):
    pass


class Histogram(_Children, prometheus_client.Histogram):
    pass


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Info("gateway", "Gateway build information", registry=r)
        # pipeline, per query
        self.queries = Counter("gateway_queries", "Queries by statement kind and outcome",
                               ["statement", "outcome"], registry=r)
        self.query_errors = Counter("gateway_query_errors", "Failed queries by Trino error name",
                                    ["error_name"], registry=r)
        self.query_duration = Histogram("gateway_query_duration_seconds",
                                        "Time from submission to the last row or the error, by outcome",
                                        ["outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.queries_in_flight = Gauge("gateway_queries_in_flight", "Queries submitted and not yet finished",
                                       registry=r)
        self.planning_duration = Histogram("gateway_planning_duration_seconds",
                                           "Parse, resolve and generate time per statement",
                                           buckets=STAGE_BUCKETS, registry=r)
        # backends
        self.backend_running = Gauge("gateway_backend_queries_running", "Queries running on a backend",
                                     ["backend"], registry=r)
        self.backend_duration = Histogram("gateway_backend_execution_seconds",
                                          "Backend time per query, start to last row", ["backend"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.backend_cancellations = Counter("gateway_backend_cancellations",
                                             "Backend queries cancelled before their end", ["backend"],
                                             registry=r)
        self.backend_busy_threads = Gauge("gateway_backend_busy_threads",
                                          "Gateway threads working inside an embedded backend", ["backend"],
                                          registry=r)
        self.backend_up = Gauge("gateway_backend_up", "1 when the backend answered the last readiness probe",
                                ["backend"], registry=r)
        # backend resilience (gateway/backends/resilience.py) and connections (credentials, pool)
        self.backend_circuit_state = Gauge("gateway_backend_circuit_state",
                                           "Circuit breaker per backend: 0 closed, 1 half-open, 2 open",
                                           ["backend"], registry=r)
        self.backend_circuit_opens = Counter("gateway_backend_circuit_opens",
                                             "Times a backend's circuit opened after connection failures",
                                             ["backend"], registry=r)
        self.backend_retries = Counter("gateway_backend_retries",
                                       "Reads run again after a connection failure before their first row",
                                       ["backend"], registry=r)
        self.backend_pool_wait = Histogram("gateway_backend_pool_wait_seconds",
                                           "Time a query waited for a pooled backend connection", ["backend"],
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.backend_pool_timeouts = Counter("gateway_backend_pool_timeouts",
                                             "Queries refused: no pooled connection free within "
                                             "pool_timeout_seconds", ["backend"], registry=r)
        self.backend_connections = Counter("gateway_backend_connections",
                                           "Backend connections by event (opened, failed, drained: closed "
                                           "because the secret they authenticated with was rotated)",
                                           ["backend", "event"], registry=r)
        # policies
        self.policy_reloads = Counter("gateway_policy_reloads", "Policy reloads by outcome (loaded, invalid)",
                                      ["outcome"], registry=r)
        self.policy_version = Info("gateway_policy", "Content hash of the policy version in force", registry=r)
        self.policy_denials = Counter("gateway_policy_denials", "Statements denied by policy", registry=r)
        self.canary_runs = Counter("gateway_canary_runs", "Policy canary runs by trigger (start, reload, schedule) "
                                   "and outcome (passed, failed)", ["trigger", "outcome"], registry=r)
        self.canary_passed = Gauge("gateway_canary_passed", "1 if the canary passed its latest run, else 0",
                                   ["canary"], registry=r)
        self.canary_failing = Gauge("gateway_canary_failing", "Canaries that failed the latest run", registry=r)
        self.canary_last_run = Gauge("gateway_canary_last_run_timestamp_seconds",
                                     "When the latest canary run finished (Unix time)", registry=r)
        self.canary_duration = Histogram("gateway_canary_duration_seconds", "Time to run every canary once",
                                         registry=r)
        self.plan_cache = Counter("gateway_plan_cache", "Plan cache lookups by result (hit, template, miss, "
                                  "failed)", ["result"], registry=r)
        self.plan_templates = Counter("gateway_plan_templates", "Plan templates tried, by outcome (proven, "
                                      "refused)", ["outcome"], registry=r)
        # identity
        self.authentications = Counter("gateway_authentications", "Successful authentications by method "
                                       "(jwt, api_key, dev)", ["method"], registry=r)
        self.auth_failures = Counter("gateway_auth_failures", "Rejected authentication attempts by reason "
                                     "(expired, wrong_audience, unknown_key, rate_limited, ...)", ["reason"],
                                     registry=r)
        self.jwks_fetches = Counter("gateway_jwks_fetches", "JWKS fetches from the identity provider by outcome",
                                    ["outcome"], registry=r)
        self.impersonation_denials = Counter("gateway_impersonation_denials",
                                             "Statements refused because the principal may not act as the "
                                             "session user", registry=r)
        # catalog
        self.catalog_refreshes = Counter("gateway_catalog_refreshes", "Catalog metadata refreshes by outcome",
                                         ["outcome"], registry=r)
        self.catalog_tables = Gauge("gateway_catalog_tables", "Tables known per catalog", ["catalog"],
                                    registry=r)
        self.pg_catalog_queries = Counter("gateway_pg_catalog_queries", "PostgreSQL-dialect statements answered "
                                          "from the emulated pg_catalog / information_schema", registry=r)
        # HTTP connections (gateway/connection_guard.py)
        self.http_connections_open = Gauge("gateway_http_connections_open", "Open client connections", registry=r)
        self.http_connections_closed = Counter(
            "gateway_http_connections_closed",
            "Connections the gateway closed: header_timeout, body_timeout, evicted (oldest waiting for headers "
            "when max_connections was reached), refused (at max_connections, none to evict)", ["reason"],
            registry=r)
        # Trino protocol frontend
        self.result_pages = Counter("gateway_trino_result_pages", "Result pages served", registry=r)
        self.result_rows = Counter("gateway_trino_result_rows", "Result rows served", registry=r)
        self.protocol_errors = Counter("gateway_trino_protocol_errors",
                                       "Requests refused before a query existed, by HTTP status", ["status"],
                                       registry=r)
        self.abandoned = Counter("gateway_trino_abandoned_queries",
                                 "Queries cancelled because the client stopped polling", registry=r)
        # result cache
        self.cache_lookups = Counter("gateway_cache_lookups", "Result cache lookups by result (hit, miss) and tier",
                                     ["result", "tier"], registry=r)
        self.cache_bytes = Gauge("gateway_cache_bytes", "Bytes held by the in-process result cache", registry=r)
        self.cache_coalesce_released = Counter(
            "gateway_cache_coalesce_released", "Coalesced queries released to run themselves: the identical query "
            "they waited for failed (not by its statement's fault) or stalled on its client", ["reason"],
            registry=r)
        self.cache_evictions = Counter("gateway_cache_evictions", "Entries evicted from the in-process cache",
                                       registry=r)
        self.cache_coalesced = Counter("gateway_cache_coalesced",
                                       "Queries that waited for an identical running query", registry=r)
        self.cache_rejected = Counter("gateway_cache_rejected", "Results not cached (too large, or no TTL)",
                                      registry=r)
        self.cache_purged = Counter("gateway_cache_purged", "Entries removed by purges", registry=r)
        self.cache_redis_errors = Counter("gateway_cache_redis_errors", "Failed Redis operations of the cache",
                                          registry=r)
        # audit trail
        self.audit_records = Counter("gateway_audit_records",
                                     "Audit records by stage (journaled, stored, replayed)", ["stage"], registry=r)
        self.audit_queue_depth = Gauge("gateway_audit_queue_depth",
                                       "Audit records journaled and not yet in the store", registry=r)
        self.audit_flush_duration = Histogram("gateway_audit_flush_seconds",
                                              "Time to write one batch to the audit store",
                                              buckets=(*STAGE_BUCKETS, 1, 5), registry=r)
        self.audit_spool_bytes = Gauge("gateway_audit_spool_bytes",
                                       "Bytes of local audit journal not yet confirmed in the store", registry=r)
        self.audit_spool_limit_bytes = Gauge("gateway_audit_spool_limit_bytes",
                                             "audit.spool_max_bytes: with this much spooled, queries are refused",
                                             registry=r)
        self.audit_store_failures = Counter("gateway_audit_store_failures",
                                            "Failed attempts to open or write the audit store", registry=r)
        self.audit_store_up = Gauge("gateway_audit_store_up", "1 while the audit store takes writes", registry=r)
        self.audit_quarantined = Counter("gateway_audit_quarantined",
                                         "Audit records the store refused, kept in the quarantine file", registry=r)
        # workload management (resource groups)
        self.workload_queued = Gauge("gateway_workload_queued", "Queries waiting for a slot, per resource group",
                                     ["group"], registry=r)
        self.workload_running = Gauge("gateway_workload_running", "Queries holding a slot, per resource group",
                                      ["group"], registry=r)
        self.workload_queue_wait = Histogram("gateway_workload_queue_wait_seconds",
                                             "Time from queueing to admission, per resource group", ["group"],
                                             buckets=LATENCY_BUCKETS, registry=r)
        self.workload_rejections = Counter("gateway_workload_rejections",
                                           "Queries refused admission by reason (no_group, budget, scan_limit, "
                                           "queue_full, queue_timeout)", ["group", "reason"], registry=r)
        self.workload_kills = Counter("gateway_workload_kills",
                                      "Admitted queries stopped by reason (execution_time, result_rows, killed)",
                                      ["group", "reason"], registry=r)
        self.workload_reloads = Counter("gateway_workload_reloads",
                                        "Workload policy reloads by outcome (loaded, invalid)", ["outcome"],
                                        registry=r)
        self.workload_redis_up = Gauge("gateway_workload_redis_up",
                                       "1 while cluster-wide admission through Redis works", registry=r)
        self.workload_redis_errors = Counter("gateway_workload_redis_errors",
                                             "Failed Redis operations of workload admission", registry=r)
        self.workload_local_admissions = Counter("gateway_workload_local_admissions",
                                                 "Queries admitted with per-process limits because Redis failed",
                                                 registry=r)
        # scale-out (gateway/replicas.py, gateway/frontends/forwarding.py)
        self.forwarded_requests = Counter("gateway_forwarded_requests",
                                          "Per-query requests for a query another replica holds, by outcome "
                                          "(forwarded, holder_gone, failed, unknown)", ["outcome"], registry=r)
        self.forward_duration = Histogram("gateway_forward_duration_seconds",
                                          "Time to the holder's response headers of a forwarded request",
                                          registry=r)
        self.replica_redis_errors = Counter("gateway_replica_redis_errors",
                                            "Failed Redis operations of the replica directory", registry=r)
        # cost metering and budgets (gateway/cost/)
        self.cost_charged = Counter("gateway_cost_charged", "Cost charged to each consumer cost center (rates in "
                                    "policies/cost.yaml)", ["cost_center"], registry=r)
        self.cost_budget_used = Gauge("gateway_cost_budget_used_ratio",
                                      "Spend of the current period over the budget's amount (1 = 100%)",
                                      ["cost_center", "period"], registry=r)
        self.cost_redis_errors = Counter("gateway_cost_redis_errors",
                                         "Failed Redis operations of the shared budget counters", registry=r)
        self.cost_budget_alerts = Counter("gateway_cost_budget_alerts",
                                          "Budget alerts raised by kind (threshold, forecast)",
                                          ["cost_center", "period", "kind"], registry=r)
        self.cost_budget_actions = Counter("gateway_cost_budget_actions",
                                           "Queries throttled or blocked by an exceeded budget",
                                           ["cost_center", "action"], registry=r)
        self.cost_webhook_deliveries = Counter("gateway_cost_webhook_deliveries",
                                               "Budget alert webhook POSTs by outcome (delivered, retried, failed, "
                                               "dropped)", ["outcome"], registry=r)
        self.cost_reloads = Counter("gateway_cost_reloads", "Cost policy reloads by outcome (loaded, invalid)",
                                    ["outcome"], registry=r)
        # PostgreSQL wire frontend (gateway/frontends/pgwire.py)
        self.pgwire_connections_open = Gauge("gateway_pgwire_connections_open",
                                             "Open PostgreSQL wire connections", registry=r)
        self.pgwire_connections = Counter("gateway_pgwire_connections",
                                          "PostgreSQL wire connections by event (authenticated, tls, refused)",
                                          ["event"], registry=r)
        self.pgwire_messages = Counter("gateway_pgwire_messages", "PostgreSQL wire client messages by type",
                                       ["type"], registry=r)
        self.pgwire_protocol_errors = Counter("gateway_pgwire_protocol_errors",
                                              "Connections ended by a protocol violation or bound (frame, "
                                              "too_large, startup_timeout)", ["kind"], registry=r)
        self.pgwire_auth_failures = Counter("gateway_pgwire_auth_failures",
                                            "Failed PostgreSQL wire authentications by method (scram, jwt, "
                                            "api_key, dev, none)", ["method"], registry=r)
        self.pgwire_cancel_requests = Counter("gateway_pgwire_cancel_requests",
                                              "CancelRequests by outcome (cancelled, ignored)", ["outcome"],
                                              registry=r)
        for outcome in ("cancelled", "ignored"):
            self.pgwire_cancel_requests.labels(outcome)  # exposed as 0 from the start
        # the console (gateway/console/)
        self.console_requests = Counter("gateway_console_requests",
                                        "Console pages and actions by page and outcome (ok, denied, refused, "
                                        "error, signed_out)", ["page", "outcome"], registry=r)
        self.console_sign_ins = Counter("gateway_console_sign_ins",
                                        "Console sign-ins by outcome (ok, failed, refused)", ["outcome"], registry=r)
        # just-in-time access (gateway/grants/)
        self.access_requests = Counter("gateway_access_requests",
                                       "Access request events recorded by this replica, by outcome (requested, "
                                       "approved, denied, revoked, expired)", ["outcome"], registry=r)
        for outcome in ("requested", "approved", "denied", "revoked", "expired"):
            self.access_requests.labels(outcome)
        self.access_grants_active = Gauge("gateway_access_grants_active",
                                          "Approved just-in-time grants in force now (all identities)", registry=r)
        # lineage (gateway/lineage/)
        self.lineage_events = Counter("gateway_lineage_events",
                                      "OpenLineage events by outcome (sent; failed: refused or unreachable after "
                                      "retries; dropped: the queue was full or the gateway stopped)", ["outcome"],
                                      registry=r)
        for outcome in ("sent", "failed", "dropped"):
            self.lineage_events.labels(outcome)  # exposed as 0 from the start, lineage on or off
        self.lineage_queue_depth = Gauge("gateway_lineage_queue_depth", "Runs waiting for the lineage sender",
                                         registry=r)
