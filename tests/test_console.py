"""The console (/console) in headless Chromium, driven by Playwright against a real gateway process: every page
loads, acts and paints (a screenshot per page, decoded and checked not blank), with the same rights as the
JSON APIs; and the pieces that keep it safe (signed session cookie, CSRF tokens, escaping, headers), with
property tests over many members of each class.

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it), never a `playwright install` download.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, load_settings
from gateway.console.chart import MAX_BARS, bar_chart
from gateway.console.session import SessionCodec
from gateway.console.web import CONTENT_SECURITY_POLICY, _safe_next
from gateway.cost.report import Line
from gateway.identity import Identity
from gateway.secret_file import SecretError, read_secret
from tests.conftest import POLICIES, GatewayProcess, demo_config
from tests.idp import AUDIENCE, ISSUER, IdP, self_signed_cert
from tests.png_check import colour_profile, is_blank

CHROMIUM = Path("/usr/bin/chromium")
WORKLOAD = """
resource_groups:
  - {name: serial, priority: 1, max_concurrency: 1, max_queued: 5, selectors: [{client_tags: [serial]}]}
  - {name: default, max_concurrency: 8, max_queued: 100, selectors: [{}]}
"""
XSS = """<script>alert("script")</script><img src=x onerror="alert(1)"><b onmouseover=alert(2)>bold</b>"""
_unique = iter(range(1, 1_000_000))


# -- the gateway and the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("console")
    policies = workdir / "policies"
    policies.mkdir()
    for file in POLICIES.glob("*.yaml"):
        shutil.copy(file, policies)
    (policies / "workload.yaml").write_text(WORKLOAD)
    config = demo_config(demo_database, identity={"mode": "dev"}, cache={"enabled": False},
                         console={"page_size": 5}, server={"shutdown_grace_seconds": 2})
    config["policies"] = {"dir": str(policies)}
    process = GatewayProcess(workdir, config)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def audited(gateway: GatewayProcess) -> dict[str, str]:
    """Statements in the trail before the pages look: a success, a denial, an XSS payload; query ids by name."""
    ids = {"count": run(gateway, "SELECT count(*) FROM nation", "alice")["id"],
           "xss": run(gateway, f"SELECT '{XSS}' AS payload, count(*) FROM nation", "alice")["id"],
           "denied": run(gateway, "SELECT * FROM gateway.audit.queries", "alice")["id"],
           "bob": run(gateway, "SELECT count(*) FROM orders", "bob")["id"]}
    wait_until(lambda: any(r["query_id"] == ids["bob"] for r in api_audit(gateway, "audrey", user="bob")),
               what="the records in the store")
    return ids


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium (apt-get install -y chromium; .ci/run does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def signed_in(browser: Any, gateway: GatewayProcess) -> Iterator[Callable[[str], Any]]:
    """A page of a browser context of the user's own (its own cookies), signed in through the form once per
    module; each call starts from the home page."""
    pages: dict[str, Any] = {}

    def sign_in(user: str) -> Any:
        if user in pages:
            pages[user].goto(f"{gateway.url}/console/")
            return pages[user]
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        page = pages[user] = context.new_page()
        page.on("dialog", lambda dialog: pytest.fail(f"a script ran: {dialog.message}"))
        page.goto(f"{gateway.url}/console/")
        assert page.url.startswith(f"{gateway.url}/console/login")  # not signed in: sent to the form
        page.fill("input[name=user]", user)
        page.click("button[type=submit]")
        page.wait_for_url(f"{gateway.url}/console/")
        return page

    yield sign_in
    for page in pages.values():
        page.context.close()


def painted(page: Any) -> None:
    """A screenshot of the page, decoded: more than its background colour."""
    shot = page.screenshot()
    assert not is_blank(shot), f"{page.url} looks blank: {colour_profile(shot)}"


# -- pages -----------------------------------------------------------------------------------------------------


def test_sign_in_and_home(browser: Any, gateway: GatewayProcess) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.goto(f"{gateway.url}/console/audit")
    assert "/console/login?next=%2Fconsole%2Faudit" in page.url
    painted(page)
    page.fill("input[name=user]", "audrey")
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway.url}/console/audit")  # back where the browser was going
    page.click("header nav >> text=Home")
    assert "Signed in as audrey" in page.inner_text("main")
    links = page.locator("header nav a").all_inner_texts()
    assert "Audit" in links and "Chargeback" not in links  # auditors: the trail, not the ledger
    painted(page)
    page.click("header button")  # sign out
    page.wait_for_url(re.compile(r".*/console/login.*"))
    page.goto(f"{gateway.url}/console/")
    assert "/console/login" in page.url
    context.close()


def test_audit_search_filters_pages_and_opens_a_record(gateway: GatewayProcess, audited: dict[str, str],
                                                       signed_in: Callable[[str], Any]) -> None:
    page = signed_in("audrey")
    page.click("header nav >> text=Audit")
    page.fill("input[name=user]", "alice")
    page.select_option("select[name=decision]", "denied")
    page.click("form.filters button")
    rows = page.locator("table.records tbody tr")
    assert rows.count() >= 1
    for row in rows.all():
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == "alice" and cells[3] == "denied", cells
    painted(page)

    page.goto(f"{gateway.url}/console/audit?query_id={audited['xss']}")
    rows = page.locator("table.records tbody tr")
    assert rows.count() == 1 and audited["xss"] in rows.inner_text()
    rows.locator("a").click()
    page.wait_for_url(re.compile(r".*/console/audit/\d+$"))
    # The payload is shown as text: no element of it exists, no script ran, the title is the page's own.
    assert page.inner_text("#original-sql") == f"SELECT '{XSS}' AS payload, count(*) FROM nation"
    assert page.locator("main script, main img, main b").count() == 0
    assert page.title().startswith("Audit record")
    assert XSS in page.inner_text("#rewritten-sql") and "tpch.nation" in page.inner_text("#rewritten-sql")
    assert "success" in page.inner_text(".summary")
    painted(page)

    page.goto(f"{gateway.url}/console/audit")  # page_size 5: the trail holds more
    first = [int(t) for t in page.locator("table.records tbody td:first-child").all_inner_texts()]
    page.click("a.next")
    second = [int(t) for t in page.locator("table.records tbody td:first-child").all_inner_texts()]
    assert len(first) == 5 and second and max(second) < min(first)

    page.goto(f"{gateway.url}/console/audit?since=last+tuesday")
    assert "since must be an ISO 8601 time" in page.inner_text(".error")


def test_chargeback_by_cost_center_and_owner(gateway: GatewayProcess, audited: dict[str, str],
                                             signed_in: Callable[[str], Any]) -> None:
    page = signed_in("fiona")
    page.click("header nav >> text=Chargeback")
    lines = page.locator("table.report tbody tr")
    centers = [row.locator("td").first.inner_text() for row in lines.all()]
    assert "CC-2001" in centers and "CC-2002" in centers  # alice's and bob's queries
    assert page.locator("svg.chart rect").count() == len(centers)
    assert page.locator("svg.chart text").first.text_content() == centers[0]  # largest first, as the table
    painted(page)
    page.select_option("select[name=by]", "owner")
    page.click("form.filters button")
    assert page.inner_text("table.report thead th:first-child") == "owner"
    assert page.locator("svg.chart rect").count() >= 1


def test_queue_shows_and_kills_queries(gateway: GatewayProcess, signed_in: Callable[[str], Any]) -> None:
    results: dict[str, dict[str, Any]] = {}
    holder = threading.Thread(target=lambda: results.update(running=run(gateway, slow_sql(), "bob", "serial")))
    holder.start()
    wait_until(lambda: any(q["state"] == "RUNNING" for q in api_queries(gateway)), what="a running query")
    waiter = threading.Thread(target=lambda: results.update(queued=run(gateway, slow_sql(), "bob", "serial")))
    waiter.start()
    wait_until(lambda: any(q["state"] == "QUEUED" for q in api_queries(gateway)), what="a queued query")
    try:
        page = signed_in("admin")
        page.click("header nav >> text=Queue")
        states = page.locator("table.queries td.state").all_inner_texts()
        assert sorted(states) == ["QUEUED", "RUNNING"]
        painted(page)
        for state in ("QUEUED", "RUNNING"):
            row = page.locator("table.queries tbody tr", has=page.locator("td.state", has_text=state))
            query_id = row.get_attribute("data-query-id")
            row.locator("input[name=message]").fill("stopped from the console")
            row.locator("button").click()
            page.wait_for_url(re.compile(r".*/console/queue\?killed=.*"))
            assert f"Query {query_id} was killed." in page.inner_text(".notice")
    finally:
        holder.join(30)
        waiter.join(30)
    for name in ("queued", "running"):
        error = results[name]["error"]
        assert error["errorName"] == "ADMINISTRATIVELY_KILLED" and "stopped from the console" in error["message"]


def test_access_requests_page(gateway: GatewayProcess, signed_in: Callable[[str], Any]) -> None:
    page = signed_in("admin")
    page.click("header nav >> text=Access requests")
    painted(page)
    analyst = signed_in("bob")  # not alice: her masks are what the explain test checks
    for reason in ("month-end reconciliation", "a second look"):
        analyst.click("header nav >> text=Access requests")
        analyst.fill("input[name=table]", "tpch.customer")
        analyst.fill("input[name=columns]", "c_phone")
        analyst.fill("input[name=reason]", reason)
        analyst.select_option("select[name=duration]", "3600")
        analyst.click("form.card button")
        assert "is pending" in analyst.inner_text(".notice")
    assert analyst.locator("form[action$='/approve']").count() == 0  # never one's own
    for action, status in (("approve", "approved"), ("deny", "denied")):
        page.goto(f"{gateway.url}/console/access")
        row = page.locator("table.requests tbody tr", has=page.locator("td", has_text="a second look"
                                                                        if action == "approve" else "month-end"))
        request_id = row.get_attribute("data-request-id")
        row.locator(f"form[action$='/{action}'] input[name=comment]").fill(f"{action}d in the console")
        row.locator(f"form[action$='/{action}'] button").click()
        assert f"Request {request_id} is {status}." in page.inner_text(".notice")
    page.goto(f"{gateway.url}/console/access?status=all")
    statuses = page.locator("table.requests td.status").all_inner_texts()
    assert "approved" in statuses and "denied" in statuses


def test_policy_explain(gateway: GatewayProcess, signed_in: Callable[[str], Any]) -> None:
    page = signed_in("audrey")
    page.click("header nav >> text=Policy explain")
    painted(page)
    page.fill("input[name=user]", "alice")
    page.fill("input[name=table]", "tpch.customer")
    page.click("form.card button")
    result = page.inner_text("#explain-result")
    assert "ALLOW" in result and "demo.tpch.customer" in result
    assert "row filter: c_nationkey IN (:nations)" in result  # alice's rule, as the policy file says
    assert "mask last4 on c_phone" in result
    assert "c_nationkey IN (1, 2, 3)" in page.inner_text("#rewritten-sql")  # her attributes, bound
    painted(page)

    page.goto(f"{gateway.url}/console/explain?user=x&groups=admins&table=tpch.customer")
    assert "row filter: true" in page.inner_text("#explain-result")  # a hypothetical identity, for an auditor
    assert "c_nationkey IN" not in page.inner_text("#rewritten-sql")

    analyst = signed_in("alice")
    analyst.goto(f"{gateway.url}/console/explain?table=gateway.audit.queries")
    assert "DENY" in analyst.inner_text("#explain-result")
    analyst.goto(f"{gateway.url}/console/explain?user=bob&table=tpch.customer")
    assert "explaining for another identity (bob) needs the right" in analyst.inner_text(".error")


# -- authorization, CSRF, the cookie ---------------------------------------------------------------------------


def test_an_analyst_cannot_open_audit_or_chargeback(gateway: GatewayProcess, audited: dict[str, str],
                                                   signed_in: Callable[[str], Any]) -> None:
    page = signed_in("alice")
    assert "Audit" not in page.locator("header nav a").all_inner_texts()
    for path in ("/console/audit", "/console/audit/1", f"/console/audit?query_id={audited['xss']}",
                 "/console/chargeback"):
        response = page.goto(f"{gateway.url}{path}")
        assert response.status == 403, path
        assert "Access Denied" in page.inner_text(".message")
    page.goto(f"{gateway.url}/console/queue")
    assert page.locator("table.queries button").count() == 0
    # Refused like the API, and audited: the auditor sees alice's attempts.
    wait_until(lambda: any(r["frontend"] == "console" and r["statement_type"] == "console_audit"
                           and r["decision"] == "denied" for r in api_audit(gateway, "audrey", user="alice")),
               what="the denied console visits in the trail")


def test_every_post_needs_the_session_csrf_token(gateway: GatewayProcess,
                                                 http_session: Callable[[str], tuple[httpx.Client, str]]) -> None:
    client, csrf = http_session("admin")
    kill = "/console/queue/20260101_000000_00000_xxxxx/kill"
    for form, headers in (({}, {}), ({"csrf": "forged"}, {}), ({"csrf": csrf[:-1]}, {}),
                          ({"csrf": csrf}, {"sec-fetch-site": "cross-site"})):
        response = client.post(kill, data=form, headers=headers)
        assert response.status_code == 403, (form, headers)
        assert "Sign out" in response.text  # an HTML page in the console, not a stack trace
    response = client.post(kill, data={"csrf": csrf})  # the right token: the action runs (no such query)
    assert response.status_code == 404 and "Target query not found" in response.text
    assert client.post("/console/logout", data={}).status_code == 403
    # Signing in needs the form's own token too (no login CSRF), and the session cookie never appears.
    anonymous, _ = http_session("")
    response = anonymous.post("/console/login", data={"user": "admin", "csrf": "x"})
    assert response.status_code == 403
    assert not any(v.startswith("gateway_console=") for v in response.headers.get_list("set-cookie"))


def test_the_session_cookie_and_headers(gateway: GatewayProcess,
                                        http_session: Callable[[str], tuple[httpx.Client, str]]) -> None:
    client, _csrf = http_session("audrey")
    cookie = next(c for c in client.cookies.jar if c.name == "gateway_console")
    assert cookie.path == "/console" and not cookie.secure  # no TLS here (see the JWT test for Secure)
    for path in ("/console/", "/console/audit", "/console/static/console.css", "/console/nope"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
    # An identity the browser edits is not one the gateway signed: back to the sign-in form.
    value = cookie.value
    forged, _ = http_session("")
    forged.cookies.set("gateway_console", value[:10] + ("x" if value[10] != "x" else "y") + value[11:])
    response = forged.get("/console/audit")
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login")


@pytest.mark.slow  # its own gateway with TLS and an identity provider: ~20 s on a busy machine
def test_jwt_sign_in_over_tls(demo_database: Path, tmp_path: Path) -> None:
    idp = IdP()
    idp.add_key("rsa-1", "rsa")
    cert, key = self_signed_cert(tmp_path)
    identity = {"mode": "jwt", "jwt": {"jwks_url": idp.jwks_url, "issuer": ISSUER, "audience": AUDIENCE,
                                       "algorithms": ["RS256"], "claims": {"user": "sub", "groups": "groups"}}}
    config = demo_config(demo_database, identity=identity, server={"tls": {"cert": str(cert), "key": str(key)}},
                         access_requests={"enabled": False})
    try:
        with GatewayProcess(tmp_path / "gw", config) as gateway, \
                httpx.Client(base_url=gateway.url, verify=False) as client, \
                httpx.Client(base_url=gateway.url, verify=False) as stranger:
            form = client.get("/console/login")
            assert 'name="secret"' in form.text and "Development identity mode" not in form.text
            token = idp.token(sub="ann", groups=["auditors"], exp=int(time.time()) + 120)
            response = client.post("/console/login", data={"csrf": form_token(form.text), "secret": token})
            assert response.status_code == 303, response.text
            set_cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("gateway_console="))
            attributes = {part.strip().split("=")[0].lower(): part.strip() for part in set_cookie.split(";")[1:]}
            assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(attributes)
            assert attributes["samesite"].lower() == "samesite=strict"
            assert int(attributes["max-age"].split("=")[1]) <= 120  # never past the token's exp
            assert token not in set_cookie
            assert "Audit records" in client.get("/console/audit").text
            # Without the just-in-time access service the page says so, and offers nothing to act on.
            access = client.get("/console/access").text
            assert "Access requests are not enabled on this gateway" in access and "/approve" not in access
            # A bad token: the form again, saying why; the attempt audited as a failed authentication.
            again = stranger.get("/console/login")
            response = stranger.post("/console/login", data={"csrf": form_token(again.text),
                                                             "secret": token[:-4] + "AAAA"})
            assert response.status_code == 401 and "Invalid bearer token" in response.text
            assert not any(v.startswith("gateway_console=") for v in response.headers.get_list("set-cookie"))
    finally:
        idp.close()


# -- the pieces, over many members -----------------------------------------------------------------------------

attribute_values = st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6),
                             st.lists(st.integers(0, 30), min_size=2, max_size=4))
identities = st.builds(
    lambda user, groups, attributes, center: Identity.create(user, groups=groups, attributes=attributes,
                                                             cost_center=center),
    st.text(min_size=1, max_size=30), st.lists(st.text(min_size=1, max_size=12), max_size=5),
    st.dictionaries(st.text(min_size=1, max_size=10), attribute_values, max_size=4),
    st.none() | st.text(max_size=10))


@given(identity=identities, position=st.integers(min_value=0))
def test_a_session_holds_its_identity_and_any_change_voids_it(identity: Identity, position: int) -> None:
    now = [1_800_000_000.0]
    codec = SessionCodec(key=b"k" * 32, lifetime_seconds=600, clock=lambda: now[0])
    value, session = codec.issue(identity)
    read = codec.read(value)
    assert read is not None and read.identity == identity and read.csrf == session.csrf
    assert read.accepts(session.csrf) and not read.accepts(session.csrf + "x") and not read.accepts(None)
    index = position % len(value)
    changed = value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1:]
    tampered = codec.read(changed)
    assert tampered is None or tampered.identity == identity  # base64 padding bits may decode alike
    assert SessionCodec(key=b"j" * 32, lifetime_seconds=600, clock=lambda: now[0]).read(value) is None
    now[0] += 601
    assert codec.read(value) is None  # expired


@given(lifetime=st.integers(1, 10**6), token_left=st.integers(-100, 10**6))
def test_a_session_never_outlives_its_token(lifetime: int, token_left: int) -> None:
    now = 1_800_000_000.0
    codec = SessionCodec(key=b"k" * 32, lifetime_seconds=lifetime, clock=lambda: now)
    value, session = codec.issue(Identity.create("u"), not_after=now + token_left)
    assert session.expires_at == now + min(lifetime, token_left)
    assert (codec.read(value) is not None) == (min(lifetime, token_left) > 0)


@given(nonce_form=st.text(max_size=40))
def test_a_sign_in_form_needs_its_own_token(nonce_form: str) -> None:
    codec = SessionCodec(key=b"k" * 32, lifetime_seconds=600)
    cookie, token = codec.sign_in_token()
    assert codec.sign_in_accepted(cookie, token)
    assert codec.sign_in_accepted(cookie, nonce_form) == (nonce_form == token)
    other, _ = codec.sign_in_token()
    assert not codec.sign_in_accepted(other, token) and not codec.sign_in_accepted(None, token)


@given(target=st.text(max_size=60) | st.from_regex(r"/console[/?a-z=%0-9]{0,30}", fullmatch=True)
       | st.sampled_from(["//evil.example/console", "/console\\@evil", "https://evil/console", "/\\evil"]))
def test_after_sign_in_the_browser_only_goes_to_the_console(target: str) -> None:
    safe = _safe_next(target)
    assert safe.startswith("/console") and not safe.startswith("//") and "\\" not in safe
    assert httpx.URL(safe).host == ""  # always a path on this gateway
    if re.fullmatch(r"/console[/?a-z=%0-9]*", target):
        assert safe == target


@given(costs=st.lists(st.floats(0, 1e6, allow_nan=False), max_size=40), label=st.text(max_size=50))
def test_the_chart_draws_what_the_report_says(costs: list[float], label: str) -> None:
    lines = sorted((Line(f"{label}{i}", i + 1, cost) for i, cost in enumerate(costs)), key=lambda x: -x.cost)
    chart = bar_chart(lines, sum(costs))
    assert len(chart.bars) == min(len(lines), MAX_BARS) and chart.omitted == len(lines) - len(chart.bars)
    assert all(0 <= bar.width <= chart.plot_width for bar in chart.bars)
    assert all(a.y < b.y and a.width >= b.width for a, b in zip(chart.bars, chart.bars[1:], strict=False))
    if chart.bars and chart.bars[0].cost > 0:
        assert chart.bars[0].width == chart.plot_width
    assert [bar.label for bar in chart.bars] == [line.key for line in lines[:MAX_BARS]]


@pytest.mark.parametrize(("setting", "tls", "secure"), [("auto", True, True), ("auto", False, False),
                                                        ("always", False, True), ("never", True, False)])
def test_the_cookie_is_secure_when_served_over_tls(setting: str, tls: bool, secure: bool) -> None:
    from gateway.console.settings import ConsoleSettings
    from gateway.console.web import Console

    console = Console(pipeline=None, settings=ConsoleSettings(secure_cookie=setting), key=b"k" * 32,  # type: ignore[arg-type]
                      tls=tls, metrics=None)  # type: ignore[arg-type]
    assert console.secure_cookie is secure


def test_the_png_check_reads_what_chromium_paints(browser: Any) -> None:
    page = browser.new_page(viewport={"width": 300, "height": 200})
    page.set_content("<body style='margin:0;background:rgb(10,200,30)'></body>")
    flat = page.screenshot()
    page.set_content("<body style='margin:0;background:linear-gradient(90deg,red,blue)'></body>")
    gradient = page.screenshot()
    page.close()
    assert colour_profile(flat) == (1, 1.0) and is_blank(flat)
    assert colour_profile(gradient)[0] > 50 and not is_blank(gradient)


def test_console_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("console: {secure_cookie: sometimes, page_size: 0, session_seconds: -1, key_env: 'a b'}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    text = str(raised.value)
    for key in ("console.secure_cookie", "console.page_size", "console.session_seconds", "console.key_env"):
        assert key in text
    assert load_settings(None, environ={"GATEWAY__CONSOLE__ENABLED": "false"}).console.enabled is False


def test_the_session_key_is_read_or_created(tmp_path: Path) -> None:
    file = tmp_path / "data" / "console.key"
    first, source = read_secret(env=None, file=file, setting="console", what="the console key", environ={})
    assert source == str(file) and file.stat().st_mode & 0o777 == 0o600
    assert read_secret(env=None, file=file, setting="console", what="k", environ={})[0] == first
    assert read_secret(env="K", file=file, setting="console", what="k", environ={"K": "x" * 20})[0] == b"x" * 20
    with pytest.raises(SecretError, match=r"console\.key_env: environment variable K is not set"):
        read_secret(env="K", file=file, setting="console", what="k", environ={})
    with pytest.raises(SecretError, match="shorter than 16 bytes"):
        read_secret(env="K", file=file, setting="console", what="k", environ={"K": "short"})


# -- helpers ---------------------------------------------------------------------------------------------------


def slow_sql() -> str:
    return f"SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x{next(_unique)}'"


def run(gateway: GatewayProcess, sql: str, user: str, tags: str = "") -> dict[str, Any]:
    """A statement through the Trino endpoint, followed to its end: the last response (with `id`)."""
    headers = {"X-Trino-User": user, "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    if tags:
        headers["X-Trino-Client-Tags"] = tags
    body = httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers, timeout=30).json()
    query_id = body["id"]
    while "nextUri" in body:
        body = httpx.get(body["nextUri"], headers={"X-Trino-User": user}, timeout=60).json()
    return {**body, "id": query_id}


def api_audit(gateway: GatewayProcess, as_user: str, **filters: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.url}/api/audit", params=filters, headers={"X-Trino-User": as_user}, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


def api_queries(gateway: GatewayProcess) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.url}/api/queries", headers={"X-Trino-User": "admin"}, timeout=10)
    return list(response.json()["queries"])


def form_token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


@pytest.fixture
def http_session(gateway: GatewayProcess) -> Iterator[Callable[[str], tuple[httpx.Client, str]]]:
    """Signed in without a browser (for requests a browser would not let a page make): the client and the
    session's CSRF token; user "" for a client that is not signed in."""
    clients: list[httpx.Client] = []

    def sign_in(user: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=gateway.url)
        clients.append(client)
        if not user:
            return client, ""
        response = client.post("/console/login", data={"csrf": form_token(client.get("/console/login").text),
                                                       "user": user})
        assert response.status_code == 303, response.text
        return client, form_token(client.get("/console/").text)

    yield sign_in
    for client in clients:
        client.close()


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)
