"""Cost metering, the ledger, budgets and chargeback: the pure parts directly, the rest through a real gateway
(DuckDB backend, SQLite audit store) and a real webhook server."""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino

from gateway.cost.alerts import Alert, AlertSink
from gateway.cost.budgets import Budgets
from gateway.cost.load import parse_costs
from gateway.cost.meter import Meter, attribute, consumer_cost_center, price
from gateway.cost.model import Charge
from gateway.cost.report import chargeback, parse_bound
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.policy.load import PolicyError, load_policies
from gateway.relations import ExecutionStats
from gateway.workload.budget import Admit, Block, Demote
from gateway.workload.model import ResourceGroup
from tests.conftest import POLICIES, GatewayProcess, demo_config

# -- a webhook receiver ---------------------------------------------------------------------------------------


class Webhook:
    """A threaded HTTP server on 127.0.0.1 that answers 500 to the first `failures` POSTs, then 200."""

    def __init__(self, failures: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                if outer.attempts <= failures:
                    self.send_response(500)
                else:
                    outer.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- pure parts -----------------------------------------------------------------------------------------------

COSTS = """
rates:
  duckdb: {per_second: 2.0, per_cpu_second: 1.0, per_million_rows: 1000}
  trino: {per_cpu_second: 0.5, per_gb_scanned: 4}
  snowflake: {per_credit: 3, credits_per_hour: {XSMALL: 1, SMALL: 2}, warehouse_size: XSMALL}
cost_centers:
  - {group: finance, cost_center: CC-7000}
budgets:
  - {cost_center: CC-1, period: monthly, amount: 10, thresholds: [50%, 100%], action: throttle, throttle_to: slow}
  - {cost_center: CC-2, period: daily, amount: 1, action: block, contact: finance@example.com}
"""


def test_cost_file_parses_and_reports_mistakes_with_file_and_line() -> None:
    policy = parse_costs({"cost.yaml": COSTS})
    assert policy.rates["duckdb"].per_second == 2.0
    assert policy.budgets[0].thresholds == (0.5, 1.0) and policy.budgets[0].throttle_to == "slow"
    with pytest.raises(PolicyError) as raised:
        parse_costs({"cost.yaml": "budgets:\n  - {cost_center: X, period: weekly, amount: 5}\n"
                                  "  - {cost_center: Y, period: daily, amount: 5, action: throttle}\n"})
    assert any(e.startswith("cost.yaml:2: period must be one of daily, monthly") for e in raised.value.errors)
    assert any(e.startswith("cost.yaml:3: action throttle needs throttle_to") for e in raised.value.errors)


def test_price_uses_the_backends_figures_and_keeps_them() -> None:
    policy = parse_costs({"cost.yaml": COSTS})
    cost, figures = price(policy.rates["duckdb"], ExecutionStats(rows=2000, elapsed_seconds=0.5, cpu_seconds=0.25))
    assert cost == pytest.approx(2.0 * 0.5 + 1.0 * 0.25 + 1000 * 2000 / 1e6)
    assert figures["elapsed_seconds"] == 0.5 and figures["rates"]["per_second"] == 2.0
    assert figures["processed_bytes"] is None  # DuckDB does not report it: not invented
    trino_cost, _ = price(policy.rates["trino"], ExecutionStats(cpu_seconds=2, extra={"processed_bytes": 5e8}))
    assert trino_cost == pytest.approx(0.5 * 2 + 4 * 0.5)
    snow, snow_figures = price(policy.rates["snowflake"], ExecutionStats(elapsed_seconds=1800,
                                                                         extra={"warehouse_size": "small"}))
    assert snow == pytest.approx(3 * 0.5 * 2) and snow_figures["credits"] == pytest.approx(1.0)


def test_cost_center_from_identity_then_group_mapping() -> None:
    policy = parse_costs({"cost.yaml": COSTS})
    assert consumer_cost_center(Identity.create("a", cost_center="CC-9"), policy) == "CC-9"
    assert consumer_cost_center(Identity.create("f", groups=["finance"]), policy) == "CC-7000"
    assert consumer_cost_center(Identity.create("x"), policy) == "unassigned"


def test_attribution_splits_equally_over_the_tables_read_to_their_owners() -> None:
    tables = load_policies(POLICIES)
    shares = attribute(0.9, ["demo.tpch.customer", "demo.tpch.orders", "demo.samples.t"], tables)
    assert [a.cost for a in shares] == pytest.approx([0.3, 0.3, 0.3])
    assert [(a.owner, a.owner_cost_center) for a in shares] == [
        ("sales-analytics", "CC-1042"), ("sales-analytics", "CC-1042"), ("platform", None)]
    assert sum(a.cost for a in attribute(0.5, [], tables)) == 0.5  # no table: unattributed, never lost


def test_a_meter_remembers_owners_per_policy_version(tmp_path: Path) -> None:
    """Owners are looked up once per table and policy version: a reloaded policy's owners apply at once."""
    first = load_policies(POLICIES)
    edited = tmp_path / "policies"
    shutil.copytree(POLICIES, edited)
    tables_file = edited / "tables.yaml"
    tables_file.write_text(tables_file.read_text().replace("owner: sales-analytics", "owner: growth", 1))
    second = load_policies(edited)
    assert first.version != second.version
    current = [first]
    meter = Meter(costs=lambda: parse_costs({"cost.yaml": COSTS}), tables=lambda: current[0], backend_types={})
    for policy, owner in ((first, "sales-analytics"), (second, "growth"), (first, "sales-analytics")):
        current[0] = policy
        for _ in range(2):
            assert meter._owner(policy, "demo.tpch.customer")[0] == owner
            assert [a.owner for a in attribute(1.0, ["demo.tpch.customer"], policy)] == [owner]


def _charge(cost: float, center: str, n: int = 0) -> Charge:
    return Charge(event_id=f"e{n}", query_id=None, charged_at="2026-11-05T00:00:00.000000Z", user_name="u",
                  cost_center=center, backend="demo", statement_type="SELECT", resource_group=None,
                  cache_hit=False, cost=cost, figures={}, tags={})


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def _budgets(text: str, when: datetime) -> tuple[Budgets, list[Alert]]:
    policy = parse_costs({"cost.yaml": text})
    sink = AlertSink(metrics=Metrics(), webhook_url=None)
    raised: list[Alert] = []
    sink.raise_alert = raised.append  # type: ignore[method-assign]
    return Budgets(costs=lambda: policy, alerts=sink, metrics=Metrics(), clock=Clock(when)), raised


def test_each_threshold_alerts_once_and_the_action_applies_at_100_percent() -> None:
    budgets, raised = _budgets(COSTS, datetime(2026, 11, 1, 1, tzinfo=UTC))
    who = Identity.create("a", cost_center="CC-1")
    group = ResourceGroup(name="adhoc", priority=0, max_concurrency=1, max_queued=1, selectors=())
    budgets.add(_charge(4, "CC-1"))
    assert raised == [] and budgets.decide(who, group) == Admit()
    budgets.add(_charge(2, "CC-1"))
    budgets.add(_charge(1, "CC-1"))
    assert [(a.kind, a.threshold) for a in raised] == [("threshold", 0.5)]
    budgets.add(_charge(3, "CC-1"))
    budgets.add(_charge(3, "CC-1"))
    assert [(a.kind, a.threshold) for a in raised] == [("threshold", 0.5), ("threshold", 1.0)]
    decision = budgets.decide(who, group)
    assert isinstance(decision, Demote) and decision.group == "slow"
    blocked = Identity.create("b", cost_center="CC-2")
    budgets.add(_charge(1.5, "CC-2"))
    decision = budgets.decide(blocked, group)
    assert isinstance(decision, Block)
    assert "CC-2" in decision.reason and "daily budget of 1.0000" in decision.reason
    assert "increase its amount in policies/cost.yaml or ask finance@example.com" in decision.reason


def test_forecast_alerts_when_the_projected_period_spend_exceeds_the_budget() -> None:
    text = "budgets:\n  - {cost_center: CC-1, period: monthly, amount: 100, thresholds: [90%]}\n"
    budgets, raised = _budgets(text, datetime(2026, 11, 11, tzinfo=UTC))  # a third of November gone
    budgets.add(_charge(30, "CC-1"))  # projects to 90: no alert
    assert raised == []
    budgets.add(_charge(5, "CC-1"))  # projects to 105
    budgets.add(_charge(1, "CC-1"))
    assert [(a.kind, round(a.projected or 0)) for a in raised] == [("forecast", 105)]


def test_report_totals_equal_the_ledger_sum() -> None:
    charges = [{"event_id": f"e{i}", "cost": c, "cost_center": cc, "user_name": u}
               for i, (c, cc, u) in enumerate([(1.5, "A", "x"), (2.25, "B", "y"), (0.25, "A", "y")])]
    attributions = [{"event_id": "e0", "cost": 0.75, "owner": "o1", "table_name": "t1"},
                    {"event_id": "e0", "cost": 0.75, "owner": "o2", "table_name": "t2"},
                    {"event_id": "e1", "cost": 2.25, "owner": "o1", "table_name": "t1"},
                    {"event_id": "e2", "cost": 0.25, "owner": None, "table_name": None}]
    start, end = parse_bound("2026-11-01", "from"), parse_bound("2026-12-01", "to")
    for by in ("cost_center", "user", "owner", "table"):
        report = chargeback(by=by, start=start, end=end, charges=charges, attributions=attributions)
        assert sum(line.cost for line in report.lines) == pytest.approx(report.total_cost) == pytest.approx(4.0)
    by_owner = chargeback(by="owner", start=start, end=end, charges=charges, attributions=attributions)
    assert [(line.key, line.queries, line.cost) for line in by_owner.lines] == [
        ("o1", 2, 3.0), ("o2", 1, 0.75), ("(none)", 1, 0.25)]


def test_webhook_receives_the_alert_after_failing_first() -> None:
    webhook = Webhook(failures=2)
    try:
        metrics = Metrics()
        sink = AlertSink(metrics=metrics, webhook_url=webhook.url, backoff_seconds=0.01, max_attempts=4)
        alert = Alert(kind="threshold", budget="CC-1/monthly", cost_center="CC-1", period="monthly",
                      period_start="2026-11", amount=10, spent=8, threshold=0.8)
        assert asyncio.run(sink.deliver(alert))
        assert webhook.attempts == 3
        assert webhook.received[0]["budget"] == "CC-1/monthly" and webhook.received[0]["threshold"] == 0.8
        assert metrics.cost_webhook_deliveries.labels("retried")._value.get() == 2
    finally:
        webhook.close()


# -- through a real gateway -----------------------------------------------------------------------------------

E2E_COSTS = """
rates:
  duckdb: {per_second: 1.0, per_cpu_second: 0.5, per_million_rows: 100}
  sqlite: {per_second: 0.1}
budgets:
  - {cost_center: CC-2001, period: daily, amount: 0.000001, thresholds: [100%], action: throttle,
     throttle_to: throttled}
  - {cost_center: CC-2002, period: monthly, amount: 0.000001, action: block, contact: finops@example.com}
"""


@pytest.fixture(scope="module")
def costed(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path,
                                                                                             Webhook]]:
    workdir = tmp_path_factory.mktemp("cost")
    policies = workdir / "policies"
    shutil.copytree(POLICIES, policies)
    (policies / "cost.yaml").write_text(E2E_COSTS)
    webhook = Webhook(failures=1)
    config = demo_config(demo_database, policies={"dir": str(policies)},
                         audit={"store": f"sqlite:///{workdir / 'audit.db'}", "spool_dir": str(workdir / "spool")},
                         cost={"webhook_url": webhook.url, "webhook_backoff_seconds": 0.05},
                         cache={"enabled": False})
    process = GatewayProcess(workdir, config)
    yield process, workdir / "audit.db", webhook
    process.stop()
    webhook.close()


def _query(gw: GatewayProcess, user: str, sql: str, catalog: str = "demo", schema: str = "tpch") -> list[Any]:
    connection = trino.dbapi.connect(host=gw.host, port=gw.port, user=user, catalog=catalog, schema=schema,
                                     client_tags=["nightly"])
    cursor = connection.cursor()
    cursor.execute(sql)
    return list(cursor.fetchall())


def _ledger(db: Path, sql: str, *args: Any) -> list[Any]:
    deadline = time.monotonic() + 5
    while True:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(sql, args).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_queries_are_priced_from_duckdb_stats_charged_and_attributed(costed: tuple[GatewayProcess, Path,
                                                                                   Webhook]) -> None:
    gw, db, _ = costed
    rows = _query(gw, "sam", "SELECT c.c_name, o.o_totalprice FROM customer c JOIN orders o "
                              "ON c.c_custkey = o.o_custkey LIMIT 50")
    assert len(rows) == 50
    charge = _ledger(db, "SELECT c.event_id, c.cost, c.figures, c.cost_center, c.tags, q.cost, q.cost_center "
                         "FROM charges c JOIN queries q USING (event_id) WHERE c.user_name = 'sam'")
    assert len(charge) == 1
    event_id, cost, figures_text, center, tags, record_cost, record_center = charge[0]
    figures = json.loads(figures_text)
    assert figures["rows"] == 50 and figures["elapsed_seconds"] > 0 and figures["cpu_seconds"] >= 0
    recomputed = (figures["elapsed_seconds"] * 1.0 + figures["cpu_seconds"] * 0.5 + figures["rows"] * 100 / 1e6)
    assert cost == pytest.approx(recomputed, rel=1e-4) and cost > 0
    assert (record_cost, record_center, center) == (cost, "CC-3001", "CC-3001")
    assert json.loads(tags)["client_tags"] == ["nightly"]
    shares = _ledger(db, "SELECT table_name, owner, owner_cost_center, cost FROM attributions WHERE event_id = ? "
                         "ORDER BY table_name", event_id)
    assert [(t, o, c) for t, o, c, _ in shares] == [("demo.tpch.customer", "sales-analytics", "CC-1042"),
                                                    ("demo.tpch.orders", "sales-analytics", "CC-1042")]
    assert sum(s[3] for s in shares) == pytest.approx(cost)


def test_finance_reads_the_ledger_through_sql_and_the_api(costed: tuple[GatewayProcess, Path, Webhook]) -> None:
    gw, db, _ = costed
    _query(gw, "sam", "SELECT count(*) FROM nation")
    _ledger(db, "SELECT 1 FROM charges WHERE user_name = 'sam' GROUP BY user_name HAVING count(*) >= 2")
    total = _ledger(db, "SELECT sum(cost), count(*) FROM charges")[0]
    rows = _query(gw, "fiona", "SELECT count(*), sum(cost) FROM charges", catalog="gateway", schema="billing")
    assert rows[0][0] >= total[1]
    # fiona's own query is charged once it ended: wait for it, so the report below sees the final ledger
    _ledger(db, "SELECT 1 FROM charges WHERE user_name = 'fiona'")
    with pytest.raises(trino.exceptions.TrinoUserError, match=r"Access Denied"):
        _query(gw, "sam", "SELECT * FROM charges", catalog="gateway", schema="billing")
    today = datetime.now(UTC).date().isoformat()
    params = {"from": today, "to": "2999-01-01", "by": "owner"}
    answer = httpx.get(f"{gw.url}/api/chargeback", params=params, headers={"X-Trino-User": "fiona"}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    ledger_sum = _ledger(db, "SELECT sum(cost) FROM charges")[0][0]
    assert body["total_cost"] == pytest.approx(ledger_sum, rel=1e-6)
    assert sum(r["cost"] for r in body["rows"]) == pytest.approx(ledger_sum, rel=1e-6)
    assert "sales-analytics" in {r["owner"] for r in body["rows"]}
    denied = httpx.get(f"{gw.url}/api/chargeback", params=params, headers={"X-Trino-User": "sam"}, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["errorName"] == "PERMISSION_DENIED"


def test_cli_report_matches_the_ledger(costed: tuple[GatewayProcess, Path, Webhook], capsys: Any) -> None:
    gw, db, _ = costed
    from gateway.cli import main

    _query(gw, "sam", "SELECT count(*) FROM region")
    time.sleep(0.3)
    assert main(["chargeback", "--config", str(gw.config_path), "--from", "2000-01-01", "--to", "2999-01-01",
                 "--by", "cost_center", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ledger_sum, count = _ledger(db, "SELECT sum(cost), count(*) FROM charges")[0]
    assert report["total_cost"] == pytest.approx(ledger_sum) and report["total_queries"] == count
    assert sum(r["cost"] for r in report["rows"]) == pytest.approx(ledger_sum)


def test_throttle_demotes_to_the_named_group_and_alerts_the_webhook(costed: tuple[GatewayProcess, Path,
                                                                                  Webhook]) -> None:
    gw, db, webhook = costed
    _query(gw, "alice", "SELECT count(*) FROM nation")  # spends the whole (tiny) daily budget of CC-2001
    _ledger(db, "SELECT 1 FROM charges WHERE user_name = 'alice'")
    _query(gw, "alice", "SELECT count(*) FROM region")
    groups = _ledger(db, "SELECT resource_group FROM queries WHERE user_name = 'alice' AND sql LIKE '%region%'")
    assert groups == [("throttled",)]
    deadline = time.monotonic() + 10
    while not any(a["cost_center"] == "CC-2001" for a in webhook.received) and time.monotonic() < deadline:
        time.sleep(0.05)
    alert = next(a for a in webhook.received if a["cost_center"] == "CC-2001")
    assert alert["kind"] == "threshold" and alert["threshold"] == 1.0 and alert["action"] == "throttle"
    assert webhook.attempts >= 2  # the first POST got a 500 and was retried
    assert gw.metric("gateway_cost_budget_alerts_total", 'cost_center="CC-2001"') == 1


def test_block_rejects_with_a_message_naming_the_budget(costed: tuple[GatewayProcess, Path, Webhook]) -> None:
    gw, db, _ = costed
    _query(gw, "bob", "SELECT count(*) FROM nation")
    _ledger(db, "SELECT 1 FROM charges WHERE user_name = 'bob'")
    with pytest.raises(trino.exceptions.TrinoUserError) as raised:
        _query(gw, "bob", "SELECT count(*) FROM region")
    assert raised.value.error_name == "QUERY_REJECTED"
    assert "cost center CC-2002" in raised.value.message and "monthly budget" in raised.value.message
    assert "finops@example.com" in raised.value.message and "policies/cost.yaml" in raised.value.message


SHARED_COSTS = """
rates:
  duckdb: {per_second: 1.0, per_cpu_second: 0.5, per_million_rows: 100}
budgets:
  - {cost_center: CC-2002, period: monthly, amount: 0.000001, thresholds: [50%, 100%], action: block,
     contact: finops@example.com}
"""


def test_budget_counters_and_alerts_are_shared_across_replicas(demo_database: Path, tmp_path: Path,
                                                              redis_prefix: str) -> None:
    prefix = redis_prefix
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    (policies / "cost.yaml").write_text(SHARED_COSTS)
    webhook = Webhook(failures=0)
    replicas = []
    try:
        for name in ("one", "two"):
            workdir = tmp_path / name
            workdir.mkdir()
            config = demo_config(demo_database, policies={"dir": str(policies)},
                                 audit={"store": f"sqlite:///{workdir / 'audit.db'}", "spool_dir": str(workdir / "s")},
                                 cost={"webhook_url": webhook.url, "redis": "redis://127.0.0.1:6379/0",
                                       "redis_prefix": prefix, "sync_seconds": 0.2},
                                 cache={"enabled": False})
            replicas.append(GatewayProcess(workdir, config))
        one, two = replicas
        _query(one, "bob", "SELECT count(*) FROM nation")  # replica one spends bob's whole budget
        deadline = time.monotonic() + 10
        while True:  # replica two learns it through Redis within a sync or two, though it charged nothing
            try:
                _query(two, "bob", "SELECT count(*) FROM region")
            except trino.exceptions.TrinoUserError as raised:
                assert raised.error_name == "QUERY_REJECTED" and "CC-2002" in raised.message
                break
            assert time.monotonic() < deadline, "replica two never saw replica one's spend"
            time.sleep(0.2)
        time.sleep(1.0)
        kinds = [(a["budget"], a["threshold"]) for a in webhook.received]
        assert sorted(kinds) == [("CC-2002/monthly", 0.5), ("CC-2002/monthly", 1.0)]  # once each, cluster-wide
    finally:
        for replica in replicas:
            replica.stop()
        webhook.close()
