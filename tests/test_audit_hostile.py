"""Hostile text and hostile stores: the audit trail keeps every attempt and keeps serving.

- Any text the gateway can receive (NUL, lone surrogates, the escape marker itself) is stored reversibly on
  SQLite and on a real PostgreSQL, and `verify` holds (Hypothesis over the real stores).
- Through a real gateway on PostgreSQL with `on_failure: deny`: `SELECT 'a<NUL>b'` and a Basic credential
  with a NUL are audited, searchable, verifiable, and every other query keeps running.
- A record the store refuses anyway (a CHECK constraint the test adds) is quarantined and never blocks the
  others; a poisoned spool left by an older gateway replays at start without wedging.
- A store that accepts connections but never answers (a TCP proxy of the test's own that stops forwarding)
  engages deny mode within seconds, the log names the reason, and the gateway recovers when it answers.

The PostgreSQL database and roles are created by this module and dropped at the end."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit.chain import Chain
from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.stores import AuditStore
from gateway.audit.stores.postgres import PostgresStore
from gateway.audit.stores.sqlite import SQLiteStore
from gateway.audit.text import ESCAPED, original_text, storable_text
from gateway.audit.verify import Verifier
from gateway.testing import GatewayProcess
from tests.conftest import api_keys_file, demo_config
from tests.tcp_proxy import HangingProxy
from tests.test_audit_postgres import Database, available

needs_postgres = pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")

HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "\udc80", "\\", ESCAPED, "\\0", "\\uD800", "'", '"', "é"])
# pieces, not characters: escapes that look like the store's own (`\\0`, `\\uD800`) must survive too
hostile_text = st.lists(st.one_of(st.characters(), HOSTILE), max_size=20).map("".join)


@given(text=hostile_text)
def test_storable_text_is_reversible_and_encodable(text: str) -> None:
    stored = storable_text(text)
    assert original_text(stored) == text
    assert "\x00" not in stored
    stored.encode("utf-8")  # no lone surrogate survives
    if "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text) and not text.startswith(ESCAPED):
        assert stored == text  # ordinary text is stored exactly as received


# -- the stores themselves, with Hypothesis-generated records --------------------------------------------------


def _fresh_database() -> Iterator[Database]:
    if not available():
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is required")
    db = Database()
    yield db
    db.drop()


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    yield from _fresh_database()


@pytest.fixture
def own_database() -> Iterator[Database]:
    """For tests that leave a quarantined record (a gap `verify` rightly names) out of the shared one."""
    yield from _fresh_database()


def hostile_record(chain: Chain, texts: list[str]) -> AuditRecord:
    a, b, c, d = (texts * 4)[:4]
    record = AuditRecord(event_id=uuid.uuid4().hex, received_at=utc_now(), finished_at=utc_now(), user_name=a,
                         sql=f"SELECT '{b}'", source="hostile", error_message=c, user_groups=[d, a],
                         tables_read=[f"demo.tpch.{d}"], columns_read={f"demo.tpch.{b}": [c]}, client_tags=[d])
    record.make_storable()
    chain.seal(record)
    return record


def check_store(store: AuditStore, batches: list[list[list[str]]]) -> None:
    async def run() -> None:
        await store.open()
        try:
            chain = Chain()
            expected: dict[str, tuple[str, str | None]] = {}
            for batch in batches:
                records = [hostile_record(chain, texts) for texts in batch]
                await store.write(records)
                expected.update({r.event_id: (r.user_name or "", r.sql) for r in records})
            verifier = Verifier()
            found = 0
            async for rows in store.scan():
                verifier.add(rows)
                for _, fields in rows:
                    if fields["event_id"] in expected:
                        user, sql = expected[fields["event_id"]]
                        assert fields["user_name"] == user and fields["sql"] == sql
                        found += 1
            report = verifier.finish(await store.checkpoints(), await store.purges())
            assert report.ok, report.problems
            assert found == len(expected)
        finally:
            await store.close()

    asyncio.run(run())


batches_of_texts = st.lists(st.lists(st.lists(hostile_text, min_size=1, max_size=4), min_size=1, max_size=5),
                            min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches_of_texts)
def test_sqlite_store_keeps_any_text(tmp_path_factory: pytest.TempPathFactory, batches: list[list[list[str]]]) -> None:
    check_store(SQLiteStore(tmp_path_factory.mktemp("hostile") / "audit.db"), batches)


@needs_postgres
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches_of_texts)
def test_postgres_store_keeps_any_text(database: Database, batches: list[list[list[str]]]) -> None:
    check_store(PostgresStore(database.gateway_url, admin_dsn=database.admin_url), batches)
    assert int(database.sql("SELECT count(*) FROM audit.table_access")) >= 1  # the jsonb view still reads


# -- a real gateway on PostgreSQL ------------------------------------------------------------------------------


def make_keys(path: Path) -> dict[str, str]:
    return api_keys_file(path, {"analyst": {"groups": ["admins"]}, "auditor": {"groups": ["auditors"]}})


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def keyed_config(demo_database: Path, workdir: Path, store: str, db: Database, **audit: Any) -> dict[str, Any]:
    return demo_config(demo_database,
                       identity={"mode": "api_keys", "api_keys": {"file": str(workdir / "keys.yaml")},
                                 "failure_limit": {"burst": 1000, "per_minute": 1000}},
                       audit={"store": store, "admin_store": db.admin_url, "spool_dir": str(workdir / "spool"),
                              "flush_interval_seconds": 0.02, "on_failure": "deny", **audit})


def statement(gateway: GatewayProcess, sql: str, headers: dict[str, str], source: str) -> dict[str, Any]:
    """POST and follow nextUri to the end; the final page."""
    page: dict[str, Any] = httpx.post(f"{gateway.url}/v1/statement", content=sql.encode(), timeout=30,
                                      headers={**headers, "X-Trino-Source": source, "X-Trino-Catalog": "demo",
                                               "X-Trino-Schema": "tpch"}).json()
    while "nextUri" in page:
        page = httpx.get(page["nextUri"], headers=headers, timeout=30).json()  # polls carry the credentials
    return page


def wait_for(condition: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def verify(gateway: GatewayProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify", "--config",
                           str(gateway.config_path)], capture_output=True, text=True, timeout=60)


@needs_postgres
def test_nul_from_any_user_never_stops_the_store(demo_database: Path, database: Database, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys.yaml")
    source = f"nul-{uuid.uuid4().hex[:6]}"
    with GatewayProcess(tmp_path, keyed_config(demo_database, tmp_path, database.gateway_url, database)) as gateway:
        analyst = basic("analyst", keys["analyst"])
        poisoned = statement(gateway, "SELECT 'a\x00b'", analyst, source)
        assert poisoned["stats"]["state"] == "FINISHED"
        refused = httpx.post(f"{gateway.url}/v1/statement", content=b"SELECT 1",
                             headers={"Authorization": "Basic eAA6eQ==", "X-Trino-Source": source})  # x\0:y
        assert refused.status_code == 401
        for _ in range(5):  # deny mode: the store is still up, so every valid query runs
            assert statement(gateway, "SELECT 1", analyst, source)["stats"]["state"] == "FINISHED"
        claimed = storable_text("x\x00")
        rows = wait_for(lambda: (found := database.sql(
            f"SELECT user_name || '|' || coalesce(sql, '') FROM audit.queries WHERE source = '{source}' "
            f"OR user_name = '{claimed}' ORDER BY id").splitlines()) and len(found) == 7 and found)
        users_and_sql = [tuple(original_text(part) for part in row.split("|", 1)) for row in rows]
        assert ("analyst", "SELECT 'a\x00b'") in users_and_sql
        assert ("x\x00", "") in users_and_sql
        assert gateway.metric("gateway_audit_spool_bytes") == 0 or wait_for(
            lambda: gateway.metric("gateway_audit_spool_bytes") == 0)
        assert gateway.metric("gateway_audit_quarantined_total") == 0
        auditor = basic("auditor", keys["auditor"])
        found = httpx.get(f"{gateway.url}/api/audit", params={"user": "x\x00"}, headers=auditor)
        assert found.status_code == 200 and found.json()["records"][0]["error_name"] == "AUTHENTICATION_FAILED"
        checked = verify(gateway)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_postgres
def test_refused_record_is_quarantined_and_the_rest_flow(demo_database: Path, own_database: Database,
                                                         tmp_path: Path) -> None:
    database = own_database
    keys = make_keys(tmp_path / "keys.yaml")
    suffix = uuid.uuid4().hex[:6]
    pill = f"pill_{suffix}"
    ensure_schema(database)
    database.sql(f"ALTER TABLE audit.queries ADD CONSTRAINT quarantine_test_{suffix} CHECK (sql NOT LIKE '%{pill}%')")
    source = f"q-{suffix}"
    try:
        config = keyed_config(demo_database, tmp_path, database.gateway_url, database, batch_size=50)
        with GatewayProcess(tmp_path, config) as gateway:
            analyst = basic("analyst", keys["analyst"])
            for number in range(9):
                sql = f"SELECT '{pill}'" if number == 4 else f"SELECT {number}"
                assert statement(gateway, sql, analyst, source)["stats"]["state"] == "FINISHED"
            wait_for(lambda: int(database.sql(f"SELECT count(*) FROM audit.queries WHERE source = '{source}'")) == 8)
            assert wait_for(lambda: gateway.metric("gateway_audit_quarantined_total") == 1)
            health = httpx.get(f"{gateway.url}/health/audit").json()
            assert health["store_up"] and health["quarantined"] == 1
            entry = health["recent"][0]
            assert "check constraint" in entry["reason"] and pill not in json.dumps(health)  # no contents
            kept = [json.loads(line) for line in Path(entry["file"]).read_text().splitlines()]
            assert kept[0]["record"]["sql"] == f"SELECT '{pill}'" and kept[0]["record"]["record_hash"]
            assert "audit record quarantined" in gateway.log()
            assert statement(gateway, "SELECT 42", analyst, source)["stats"]["state"] == "FINISHED"  # deny: open
        checked = verify(gateway)  # the store lacks the record, and says where it is
        assert checked.returncode == 1 and "DELETED" in checked.stdout
        assert "1 records the store refused are quarantined" in checked.stdout
    finally:
        database.sql(f"ALTER TABLE audit.queries DROP CONSTRAINT IF EXISTS quarantine_test_{suffix}")


def ensure_schema(database: Database) -> None:
    async def migrate() -> None:
        store = PostgresStore(database.gateway_url, admin_dsn=database.admin_url)
        await store.open()
        await store.close()

    asyncio.run(migrate())


@needs_postgres
def test_poisoned_spool_replays_at_start(demo_database: Path, own_database: Database, tmp_path: Path) -> None:
    """A journal left by a gateway from before the fix: a raw NUL record (sealed unescaped), a good record,
    an unreadable line. The new gateway stores the good one, quarantines the rest, and serves in deny mode."""
    database = own_database
    keys = make_keys(tmp_path / "keys.yaml")
    spool = tmp_path / "spool"
    spool.mkdir()
    chain = Chain(f"old-{uuid.uuid4().hex[:8]}")
    lines = []
    for sql in ("SELECT 'a\x00b'", "SELECT 'fine'"):
        record = AuditRecord(event_id=uuid.uuid4().hex, received_at=utc_now(), finished_at=utc_now(),
                             user_name="old", sql=sql, source=chain.stream)
        lines.append(chain.seal(record))  # not made storable: what the old gateway wrote
    lines.append('{"torn": ')
    (spool / f"{chain.stream}.000001.jsonl").write_bytes("".join(f"{line}\n" for line in lines).encode())
    with GatewayProcess(tmp_path, keyed_config(demo_database, tmp_path, database.gateway_url, database)) as gateway:
        stored = wait_for(lambda: database.sql(
            f"SELECT string_agg(sql, ',') FROM audit.queries WHERE source = '{chain.stream}'"))
        assert stored == "SELECT 'fine'"
        assert wait_for(lambda: gateway.metric("gateway_audit_quarantined_total") == 2)
        assert not list(spool.glob(f"{chain.stream}.*.jsonl"))  # replayed: the segment is gone
        quarantined = (spool / "quarantine" / f"{chain.stream}.jsonl").read_text().splitlines()
        assert len(quarantined) == 2 and any("invalid byte sequence" in line for line in quarantined)
        assert statement(gateway, "SELECT 1", basic("analyst", keys["analyst"]),
                         "after-replay")["stats"]["state"] == "FINISHED"


# -- a hung store ----------------------------------------------------------------------------------------------


def hang_and_recover(gateway: GatewayProcess, proxy: HangingProxy, headers: dict[str, str],
                     source: str) -> tuple[float, float, int]:
    """(seconds until deny mode engaged, seconds until queries run again after recovery, queries let through
    while the store was hung)."""
    assert statement(gateway, "SELECT 1", headers, source)["stats"]["state"] == "FINISHED"
    proxy.hang()
    hung_at = time.monotonic()
    let_through = 0
    while True:
        page = statement(gateway, "SELECT 1", headers, source)
        if page.get("error", {}).get("errorName") == "AUDIT_UNAVAILABLE":
            engaged = time.monotonic() - hung_at
            break
        let_through += 1
        assert time.monotonic() - hung_at < 15, "deny mode did not engage"
    proxy.resume()
    resumed_at = time.monotonic()
    while statement(gateway, "SELECT 1", headers, source)["stats"]["state"] != "FINISHED":
        assert time.monotonic() - resumed_at < 30, "the gateway did not recover"
        time.sleep(0.05)
    return engaged, time.monotonic() - resumed_at, let_through


@needs_postgres
def test_hung_store_engages_deny_within_seconds(demo_database: Path, database: Database, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys.yaml")
    with HangingProxy(5432) as proxy:
        url = database.gateway_url.replace(":5432/", f":{proxy.port}/")
        config = keyed_config(demo_database, tmp_path, url, database, probe_interval_seconds=0.5,
                              probe_timeout_seconds=1, store_timeout_seconds=3)
        with GatewayProcess(tmp_path, config) as gateway:
            engaged, recovered, let_through = hang_and_recover(gateway, proxy, basic("analyst", keys["analyst"]),
                                                               "hung")
            print(f"hung store: deny engaged after {engaged:.2f} s ({let_through} queries let through, "
                  f"journaled); recovered {recovered:.2f} s after the store answered again")
            assert engaged < 3.5
            assert recovered < 10
            log = gateway.log()
            assert "audit store health probe failed: " in log and "no answer within 1 s" in log
            health = httpx.get(f"{gateway.url}/health/audit").json()
            assert health["store_up"] and "no answer" in (health["last_failure"] or "")
        checked = verify(gateway)
        assert checked.returncode == 0, checked.stdout + checked.stderr  # nothing lost across the hang


@needs_postgres
@pytest.mark.slow
def test_hung_store_cycles(demo_database: Path, database: Database, tmp_path: Path) -> None:
    """Five hang/recover cycles with the default probe settings; every attempt is stored in the end."""
    keys = make_keys(tmp_path / "keys.yaml")
    with HangingProxy(5432) as proxy:
        url = database.gateway_url.replace(":5432/", f":{proxy.port}/")
        with GatewayProcess(tmp_path, keyed_config(demo_database, tmp_path, url, database)) as gateway:
            timings = [hang_and_recover(gateway, proxy, basic("analyst", keys["analyst"]), "cycles")
                       for _ in range(5)]
            print("hung store cycles (engage s, recover s, let through):",
                  [(round(e, 2), round(r, 2), n) for e, r, n in timings])
            assert all(engaged < 4.5 for engaged, _, _ in timings)
            wait_for(lambda: gateway.metric("gateway_audit_spool_bytes") == 0, timeout=30)
        checked = verify(gateway)
        assert checked.returncode == 0, checked.stdout + checked.stderr
