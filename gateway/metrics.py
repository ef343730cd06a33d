"""Every Prometheus metric the gateway exposes, named in one place.

One `Metrics` object per application (its own registry), so several gateways in one process (tests) never
share counters. Stages receive the object and touch only their own metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
        # policies
        self.policy_reloads = Counter("gateway_policy_reloads", "Policy reloads by outcome (loaded, invalid)",
                                      ["outcome"], registry=r)
        self.policy_version = Info("gateway_policy", "Content hash of the policy version in force", registry=r)
        self.policy_denials = Counter("gateway_policy_denials", "Statements denied by policy", registry=r)
        self.plan_cache = Counter("gateway_plan_cache", "Plan cache lookups by result (hit, miss)", ["result"],
                                  registry=r)
        # catalog
        self.catalog_refreshes = Counter("gateway_catalog_refreshes", "Catalog metadata refreshes by outcome",
                                         ["outcome"], registry=r)
        self.catalog_tables = Gauge("gateway_catalog_tables", "Tables known per catalog", ["catalog"],
                                    registry=r)
        # Trino protocol frontend
        self.result_pages = Counter("gateway_trino_result_pages", "Result pages served", registry=r)
        self.result_rows = Counter("gateway_trino_result_rows", "Result rows served", registry=r)
        self.protocol_errors = Counter("gateway_trino_protocol_errors",
                                       "Requests refused before a query existed, by HTTP status", ["status"],
                                       registry=r)
        self.abandoned = Counter("gateway_trino_abandoned_queries",
                                 "Queries cancelled because the client stopped polling", registry=r)
