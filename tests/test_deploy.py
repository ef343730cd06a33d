"""deploy/ is true to the code: every manifest validates against the Kubernetes schemas (kubernetes-validate,
offline, strict), the Helm chart renders with Helm's own engine (helm-python-sdk) into the same objects as the
Kustomize base, the configuration they carry loads with gateway/config.py and runs a real gateway against the
real PostgreSQL and Redis, every metric a dashboard panel or an alert names exists in gateway/metrics.py, the
alert rules pass `promtool check rules` and `promtool test rules`, the systemd unit passes
`systemd-analyze verify` and `security`, and the runbooks name real metrics, log lines and CLI commands."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes_validate import utils as kubernetes_schemas
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from gateway.cli import _parser
from gateway.config import ConfigError, ServerSettings, load_settings
from gateway.cost.load import load_costs
from gateway.metrics import Metrics
from gateway.policy.load import load_policies
from gateway.testing import GatewayProcess
from gateway.workload.load import load_workload
from tests.conftest import REDIS_URL, needs_redis
from tests.idp import AUDIENCE, ISSUER, IdP

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
CHART = DEPLOY / "helm" / "query-gateway"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "query-gateway.json"
UNIT = DEPLOY / "systemd" / "query-gateway.service"
RUNBOOKS = ROOT / "docs" / "runbooks"
# The oldest Kubernetes the manifests support (preStop `sleep` needs 1.30: Chart.yaml kubeVersion) and the
# newest the bundled schemas know.
KUBERNETES_VERSIONS = ("1.30", kubernetes_schemas.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted((DEPLOY / "kubernetes").rglob("*.yaml"))
            if path.name != "kustomization.yaml" for doc in documents(path)]


def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for path, doc in manifests() if path.parent == BASE}


def by_kind(objects: dict[tuple[str, str], dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    [found] = [doc for (k, name), doc in objects.items() if k == kind and name.endswith(suffix)]
    return found


def validate(doc: dict[str, Any]) -> None:
    _validate_text(json.dumps(doc, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _validate_text(text: str) -> None:
    """Cached: the property tests below render many identical objects, and each validation reads the schemas."""
    for version in KUBERNETES_VERSIONS:
        kubernetes_schemas.validate(json.loads(text), version, strict=True)


# -- Kubernetes manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("path,doc", manifests(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_manifest_is_valid_kubernetes(path: Path, doc: dict[str, Any]) -> None:
    validate(doc)


def test_kustomization_lists_every_base_file() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in BASE.glob("*.yaml")
                                                         if p.name != "kustomization.yaml")


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every mapping inside `node`, by its path."""
    if isinstance(node, dict):
        yield prefix
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _at(node: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


DEPLOYMENT = by_kind(base_objects(), "Deployment")


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(list(_paths(DEPLOYMENT))), st.from_regex(r"[a-z][A-Za-z]{2,12}", fullmatch=True))
def test_schema_validation_catches_a_misspelt_key(path: tuple[str | int, ...], key: str) -> None:
    """The validation above can fail: a key the schema does not know, anywhere in the Deployment, is refused
    (strict schemas), so a misspelt `readinesProbe` or `securityContex` never passes silently."""
    doc = json.loads(json.dumps(DEPLOYMENT))
    target = _at(doc, path)
    if key in target or (path and path[-1] in ("labels", "annotations", "matchLabels", "data", "limits",
                                              "requests", "nodeSelector")):
        return  # free-form maps take any key
    target[key] = "x"
    with pytest.raises(kubernetes_schemas.ValidationError):
        validate(doc)


# -- the configuration the manifests carry is the gateway's own --------------------------------------------


def secret_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for doc in documents(DEPLOY / "kubernetes" / "secret.example.yaml"):
        if doc["metadata"]["name"] == "query-gateway-secrets":
            values.update(doc["stringData"])
    return values


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [gateway] = deployment["spec"]["template"]["spec"]["containers"]
    return gateway  # type: ignore[no-any-return]


def secret_environment(deployment: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment, with each secretKeyRef resolved from `secrets`."""
    env = {}
    for item in container(deployment)["env"]:
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = secrets[ref["key"]]
    return env


def pod_files(objects: dict[tuple[str, str], dict[str, Any]], root: Path) -> tuple[Path, Path]:
    """gateway.yaml and the policy files written under `root` where the pod mounts them; (config, policies)."""
    config = by_kind(objects, "ConfigMap", "-config")["data"]["gateway.yaml"]
    policies = by_kind(objects, "ConfigMap", "-policies")["data"]
    config_path = root / "etc/gateway/gateway.yaml"
    (root / "etc/gateway/policies").mkdir(parents=True)
    (root / "var/lib/gateway").mkdir(parents=True)
    config_path.write_text(config.replace("/etc/gateway", f"{root}/etc/gateway")
                           .replace("/var/lib/gateway", f"{root}/var/lib/gateway"))
    for name, text in policies.items():
        (root / "etc/gateway/policies" / name).write_text(text)
    return config_path, root / "etc/gateway/policies"


def mount_of(deployment: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """The volume mounted at the deepest mount point holding `path`."""
    mounts = [m for m in container(deployment)["volumeMounts"]
              if str(path) == m["mountPath"] or str(path).startswith(m["mountPath"].rstrip("/") + "/")]
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume  # type: ignore[no-any-return]


def kubernetes_quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", text).groups()  # type: ignore[union-attr]
    return int(number) * units.get(unit or "", 1)


def rendered_objects(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values or {}, name="query-gateway", namespace="gateway")
    objects = {}
    for text in rendered.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def both_renderings() -> list[tuple[str, dict[tuple[str, str], dict[str, Any]]]]:
    return [("kustomize-base", base_objects()), ("helm-defaults", rendered_objects())]


@pytest.mark.parametrize("name,objects", both_renderings(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifests_match_the_gateway(name: str, objects: dict[tuple[str, str], dict[str, Any]],
                                     tmp_path: Path) -> None:
    deployment = by_kind(objects, "Deployment")
    gateway = container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    config_path, policies = pod_files(objects, tmp_path)
    env = secret_environment(deployment, secret_values())
    secrets = secret_values()
    loaded = load_settings(config_path, env)  # every GATEWAY__ variable names a real key, or this raises
    for variable in env:
        assert variable.startswith("GATEWAY__") or variable == loaded.masking.key_env, variable
    # secrets arrive from the Secret, never from the ConfigMap; without them the gateway refuses to start
    assert loaded.backends[0].dsn == secrets["warehouse-dsn"]
    assert loaded.audit.store == secrets["audit-store-url"]
    assert loaded.workload.redis == loaded.cache.redis == loaded.cost.redis == secrets["redis-url"]
    assert env[loaded.masking.key_env] == secrets["mask-key"]
    assert not any(value in config_path.read_text() for value in secrets.values())
    with pytest.raises(ConfigError, match=r"backends\.warehouse\.dsn: is required"):
        load_settings(config_path, {})
    # the command line, ports and probes are the gateway's
    args = gateway["args"]
    assert _parser().parse_args(args[1:]).command == "serve"
    assert mount_of(deployment, args[-1])["configMap"]["name"].endswith("-config")
    assert gateway["ports"][0]["containerPort"] == loaded.server.port
    # the PostgreSQL wire port: opened by the config, named on the container, on the Service, let in
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert loaded.server.pgwire_port is not None and ports["pgwire"] == loaded.server.pgwire_port
    service = {p["name"]: p for p in by_kind(objects, "Service")["spec"]["ports"]}
    assert service["pgwire"]["targetPort"] == "pgwire" and service["pgwire"]["port"] == loaded.server.pgwire_port
    ingress = {p["port"] for rule in by_kind(objects, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    assert {loaded.server.port, loaded.server.pgwire_port} <= ingress
    from gateway.frontends.ops import OpsEndpoints

    routes = {route.path for route in OpsEndpoints(metrics=Metrics(), backends={}, is_draining=lambda: False,
                                                   audit_status=dict).routes()}
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready" in routes
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live" in routes
    # the pod's grace period covers preStop, the drain and the clients' last fetch
    pre_stop = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > (pre_stop + loaded.server.shutdown_grace_seconds
                                                   + loaded.server.shutdown_delivery_seconds)
    # read-only root, non-root; everything the gateway writes is on an emptyDir big enough for the spool
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    pod_root = str(tmp_path)
    spool = mount_of(deployment, str(loaded.audit.spool_dir).removeprefix(pod_root))
    assert kubernetes_quantity(spool["emptyDir"]["sizeLimit"]) > loaded.audit.spool_max_bytes
    assert "configMap" in mount_of(deployment, str(loaded.policies.dir).removeprefix(pod_root))
    assert loaded.identity.api_keys is not None and loaded.identity.api_keys.file is not None
    assert "secret" in mount_of(deployment, str(loaded.identity.api_keys.file).removeprefix(pod_root))
    # the policy files parse as the gateway parses them
    assert load_policies(policies).tables
    assert load_workload(policies).groups
    load_costs(policies)


def test_helm_defaults_render_the_kustomize_base() -> None:
    base, helm = base_objects(), rendered_objects()
    assert sorted(base) == sorted(helm)
    for key in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"):
        assert _without_labels(by_kind(base, key)["spec"]) == _without_labels(by_kind(helm, key)["spec"]), key
    for suffix in ("-config", "-policies"):
        ours, theirs = by_kind(base, "ConfigMap", suffix)["data"], by_kind(helm, "ConfigMap", suffix)["data"]
        assert {k: yaml.safe_load(v) for k, v in ours.items()} == {k: yaml.safe_load(v) for k, v in theirs.items()}


def _without_labels(node: Any) -> Any:
    """Helm adds instance/chart labels and a config checksum; everything else must be equal."""
    if isinstance(node, dict):
        return {k: _without_labels(v) for k, v in node.items()
                if k not in ("labels", "annotations", "matchLabels")
                and not (k == "selector" and "matchLabels" not in v)}  # a Service's selector is labels too
    if isinstance(node, list):
        items = [_without_labels(v) for v in node]
        return sorted(items, key=json.dumps) if all(isinstance(i, dict) and "name" in i for i in node) else items
    return node


def test_helm_lint_finds_no_error() -> None:
    assert helm_python.lint(str(CHART))["errors"] == []


@settings(max_examples=10, deadline=None)
@given(pre_stop=st.integers(0, 60), grace=st.integers(1, 600), delivery=st.integers(1, 60),
       spare=st.integers(0, 30), queue_depth=st.booleans(), autoscaling=st.booleans(),
       network_policy=st.booleans(), pdb=st.booleans(), replicas=st.integers(1, 20))
def test_helm_values_render_valid_manifests(pre_stop: int, grace: int, delivery: int, spare: int,
                                            queue_depth: bool, autoscaling: bool, network_policy: bool,
                                            pdb: bool, replicas: int) -> None:
    values = {"preStopSeconds": pre_stop, "terminationSpareSeconds": spare, "replicaCount": replicas,
              "config": {"server": {"shutdown_grace_seconds": grace, "shutdown_delivery_seconds": delivery}},
              "autoscaling": {"enabled": autoscaling, "queueDepth": {"enabled": queue_depth}},
              "networkPolicy": {"enabled": network_policy}, "podDisruptionBudget": {"enabled": pdb}}
    objects = rendered_objects(values)
    for doc in objects.values():
        validate(doc)
    kinds = {kind for kind, _ in objects}
    assert ("HorizontalPodAutoscaler" in kinds) == autoscaling
    assert ("NetworkPolicy" in kinds) == network_policy
    assert ("PodDisruptionBudget" in kinds) == pdb
    deployment = by_kind(objects, "Deployment")
    grace_period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_period == pre_stop + grace + delivery + spare
    assert deployment["spec"].get("replicas") == (None if autoscaling else replicas)
    if autoscaling:
        metrics = by_kind(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["Resource", "Pods"] if queue_depth else ["Resource"]


def test_helm_without_a_pgwire_port_opens_none() -> None:
    objects = rendered_objects({"config": {"server": {"pgwire_port": None}}})
    assert [p["name"] for p in container(by_kind(objects, "Deployment"))["ports"]] == ["http"]
    assert [p["name"] for p in by_kind(objects, "Service")["spec"]["ports"]] == ["http"]
    ingress = [p["port"] for rule in by_kind(objects, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]]
    assert ingress == [8080]


def test_helm_renders_a_secret_only_when_asked() -> None:
    values = secret_values()
    objects = rendered_objects({"secret": {"create": True, "values": values}})
    secret = by_kind(objects, "Secret")
    validate(secret)
    assert secret["stringData"] == values
    with pytest.raises(helm_python.HelmError, match=r"secret\.values\.mask-key is required"):
        rendered_objects({"secret": {"create": True, "values": {k: v for k, v in values.items() if k != "mask-key"}}})


# -- a real gateway from the manifests' configuration --------------------------------------------------------


@pytest.fixture
def pg_database() -> Iterator[str]:
    from tests.pg_warehouse import SERVER, available, psql

    if not available():
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not available")
    name = f"gw_deploy_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    psql("CREATE TABLE public.orders (id integer, amount numeric(10, 2)); "
         "INSERT INTO public.orders VALUES (1, 9.50), (2, 20.00)", database=name)
    yield f"{SERVER}/{name}"
    psql(f'DROP DATABASE "{name}" WITH (FORCE)')


def run_query(url: str, token: str, sql: str) -> tuple[list[list[Any]], str | None]:
    """The rows, and the error name if the query failed; polled to its end like a Trino client."""
    rows: list[list[Any]] = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        body = http.post(f"{url}/v1/statement", content=sql,
                         headers={"X-Trino-Catalog": "warehouse", "X-Trino-Schema": "public"}).json()
        while True:
            rows.extend(body.get("data", []))
            if "nextUri" not in body:
                return rows, body.get("error", {}).get("errorName")
            body = http.get(body["nextUri"]).json()


@pytest.mark.slow
@needs_redis
def test_a_gateway_runs_from_the_manifests(pg_database: str, redis_prefix: str, tmp_path: Path) -> None:
    """The base's gateway.yaml and policies, with the Secret's keys pointing at the real PostgreSQL (warehouse,
    audit store, ledger) and Redis (admission, cache, budgets): it becomes ready, answers a JWT-authenticated
    query under the shipped policies, and audits it in PostgreSQL."""
    objects = base_objects()
    config_path, _ = pod_files(objects, tmp_path)
    env = secret_environment(by_kind(objects, "Deployment"), {
        "warehouse-dsn": pg_database, "audit-store-url": pg_database, "redis-url": REDIS_URL,
        "mask-key": uuid.uuid4().hex})
    idp = IdP()
    idp.add_key("rsa-1")
    try:
        config = yaml.safe_load(config_path.read_text())
        config["identity"]["jwt"].update(jwks_url=idp.jwks_url, issuer=ISSUER, audience=AUDIENCE)
        for section, key in (("workload", "key_prefix"), ("cache", "redis_prefix"), ("cost", "redis_prefix")):
            config.setdefault(section, {})[key] = f"{redis_prefix}{section}:"
        with GatewayProcess(tmp_path / "run", config, env=env) as process:
            assert httpx.get(f"{process.url}/health/live").status_code == 200
            admin = idp.token(groups=["admins"])
            assert run_query(process.url, admin, "SELECT id FROM orders ORDER BY id") == ([[1], [2]], None)
            analyst = idp.token(groups=["analysts"])  # the shipped tables.yaml lets only admins read
            assert run_query(process.url, analyst, "SELECT id FROM orders") == ([], "PERMISSION_DENIED")
            assert process.metric("gateway_workload_redis_up") == 1
            assert process.metric("gateway_audit_store_up") == 1
            assert process.metric("gateway_audit_spool_limit_bytes") == 1024**3
    finally:
        idp.close()
    from tests.pg_warehouse import psql

    database = pg_database.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while int(psql("SELECT count(*) FROM audit.queries", database=database)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the gateway flushed on stop; this only covers a slow disk
    decisions = psql("SELECT string_agg(decision, ',' ORDER BY decision) FROM audit.queries", database=database)
    assert decisions.split(",") == ["denied", "success"]


# -- metric names in the dashboard and the alert rules ------------------------------------------------------

PROMQL_WORDS = {
    # aggregations, functions and keywords of PromQL that appear in our expressions
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "rate", "irate", "increase", "histogram_quantile", "absent", "predict_linear", "offset",
    "bool", "topk", "bottomk", "clamp_min", "clamp_max", "delta", "deriv", "time", "vector", "label_values",
}
SCRAPE_SERIES = {"up": set()}  # added by Prometheus to every target


def exposed_series() -> dict[str, set[str]]:
    """Every series name gateway/metrics.py exposes, with its label names."""
    series: dict[str, set[str]] = dict(SCRAPE_SERIES)
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        [family] = metric.describe()
        labels = set(metric._labelnames)
        if isinstance(metric, Counter):
            names = {f"{family.name}_total": labels, f"{family.name}_created": labels}
        elif isinstance(metric, Histogram):
            names = {f"{family.name}_{end}": labels | ({"le"} if end == "bucket" else set())
                     for end in ("bucket", "count", "sum", "created")}
        elif isinstance(metric, Info):
            names = {f"{family.name}_info": {"*"}}  # its labels are the info keys, set at run time
        else:
            assert isinstance(metric, Gauge)
            names = {family.name: labels}
        series.update(names)
    return series


TARGET_LABELS = {"job", "instance", "pod", "namespace"}


def series_in(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(series names, label names matched per series, label names grouped by) of a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors ([5m], [$__rate_interval])
    matchers: dict[str, set[str]] = {}
    for name, body in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", text):
        matchers.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
    grouped = {label for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text)
               for label in re.findall(r"\w+", group)}
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"(?<![\w$.])([A-Za-z_:][\w:]*)", text)) - PROMQL_WORDS
    return words, matchers, grouped


def check_expression(expr: str, exposed: dict[str, set[str]]) -> list[str]:
    names, matchers, grouped = series_in(expr)
    problems = [f"{name}: no such metric in gateway/metrics.py" for name in sorted(names - set(exposed))]
    known = set().union(*(exposed.get(n, set()) for n in names)) | TARGET_LABELS
    for name, labels in matchers.items():
        allowed = exposed.get(name, set()) | TARGET_LABELS
        if "*" not in allowed:
            problems += [f"{name}: no label {label!r}" for label in sorted(labels - allowed)]
    if "*" not in known:
        problems += [f"grouped by {label!r}, which none of {sorted(names)} has" for label in sorted(grouped - known)]
    return problems


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(panel["title"], target["expr"]) for panel in dashboard["panels"]
             for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(SELECTOR, LABEL)
            selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"]).groups()  # type: ignore[union-attr]
            found.append((variable["name"], f"count by ({label}) ({selector})"))
    return found


@pytest.mark.parametrize("where,expr", alert_expressions() + dashboard_expressions(), ids=lambda v: v[:40])
def test_every_metric_a_rule_or_panel_uses_exists(where: str, expr: str) -> None:
    exposed = exposed_series()
    problems = check_expression(expr, exposed)
    names = series_in(expr)[0]
    assert names, f"{where}: no metric found in {expr!r}"
    assert not problems, f"{where}: {problems}"


METRIC_NAMES = sorted(exposed_series())
LABEL_NAMES = sorted({label for labels in exposed_series().values() for label in labels if label != "*"})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(METRIC_NAMES), st.booleans(), st.sampled_from(["rate", "increase", ""])),
                min_size=1, max_size=4),
       st.sampled_from(["sum", "max", "min"]), st.sampled_from([" + ", " / ", " and ", " or "]),
       st.from_regex(r"gateway_[a-z]{3,10}_[a-z]{3,8}", fullmatch=True), st.booleans())
def test_the_metric_check_sees_every_name(parts: list[tuple[str, bool, str]], aggregation: str, operator: str,
                                          stranger: str, add_stranger: bool) -> None:
    """The checker above finds every series of an expression (inside functions, aggregations, binary operators,
    with or without label matchers and ranges) and names the one that gateway/metrics.py does not expose."""
    exposed = exposed_series()
    names = [name for name, _, _ in parts] + ([stranger] if add_stranger else [])
    terms = []
    for name, with_matcher, function in [*parts, *([(stranger, True, "rate")] if add_stranger else [])]:
        selector = f'{name}{{job="query-gateway", instance=~"a|b"}}' if with_matcher else name
        terms.append(f"{aggregation} by (instance) ({function}({selector}[5m]))" if function
                     else f"{aggregation}({selector})")
    expr = operator.join(terms)
    found, _, _ = series_in(expr)
    assert found == set(names)
    problems = check_expression(expr, exposed)
    assert any(stranger in p for p in problems) == (add_stranger and stranger not in exposed)


def test_the_metric_check_sees_a_wrong_label() -> None:
    exposed = exposed_series()
    assert check_expression('sum(rate(gateway_queries_total{outcom="failed"}[5m]))', exposed) == [
        "gateway_queries_total: no label 'outcom'"]
    assert check_expression("sum by (reasn) (rate(gateway_auth_failures_total[5m]))", exposed) == [
        "grouped by 'reasn', which none of ['gateway_auth_failures_total'] has"]


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and 0 <= panel["gridPos"]["x"] < 24, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("outcome", "p99", "queued", "admission", "hit ratio", "audit lag", "spool", "backend up",
                  "redis", "budget"):
        assert topic in titles, topic


# -- promtool ------------------------------------------------------------------------------------------------

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool missing (Debian package prometheus; "
                                                            ".ci/run installs it)")


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([str(promtool), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run([str(promtool), "test", "rules", "alerts_test.yaml"], capture_output=True, text=True,
                          cwd=ALERTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_links_a_runbook_and_has_a_unit_test() -> None:
    tests = yaml.safe_load((ALERTS.parent / "alerts_test.yaml").read_text())
    firing = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    for rule in rules:
        assert (ROOT / rule["annotations"]["runbook"]).is_file(), rule["alert"]
    assert {rule["alert"] for rule in rules} - firing == set(), "alerts no promtool test sees firing"


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = ALERTS.read_text().replace("gateway_audit_store_up == 0", "gateway_audit_store_up == == 0")
    (tmp_path / "alerts.yaml").write_text(broken)
    done = subprocess.run([str(promtool), "check", "rules", str(tmp_path / "alerts.yaml")], capture_output=True)
    assert done.returncode != 0


# -- systemd -------------------------------------------------------------------------------------------------

systemd_analyze = shutil.which("systemd-analyze")


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's `gateway` (verify checks the binary exists)."""
    gateway = Path(shutil.which("gateway") or Path(__import__("sys").executable).parent / "gateway")
    unit = tmp_path / "query-gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/query-gateway/bin/gateway", str(gateway)))
    return unit


def test_systemd_unit_keys() -> None:
    keys = unit_keys(UNIT.read_text())
    defaults = ServerSettings()
    assert keys["KillSignal"] == ["SIGTERM"]
    assert int(keys["TimeoutStopSec"][0]) > defaults.shutdown_grace_seconds + defaults.shutdown_delivery_seconds
    assert keys["RestartPreventExitStatus"] == ["2"]  # `gateway serve` exits 2 on a refused configuration
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert keys[hardening] == ["yes"], hardening
    assert keys["ProtectSystem"] == ["strict"]
    assert keys["CapabilityBoundingSet"] == [""]
    exec_start = keys["ExecStart"][0].split()
    assert _parser().parse_args(exec_start[1:]).command == "serve"
    # it may listen on the base config's ports (HTTP and PostgreSQL wire) and no others
    server = yaml.safe_load(by_kind(base_objects(), "ConfigMap", "-config")["data"]["gateway.yaml"])["server"]
    assert keys["SocketBindAllow"] == [f"tcp:{server['port']}", f"tcp:{server['pgwire_port']}"]
    assert keys["SocketBindDeny"] == ["any"]


@pytest.mark.skipif(systemd_analyze is None, reason="systemd-analyze missing")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    done = subprocess.run([str(systemd_analyze), "verify", str(local_unit(tmp_path))], capture_output=True,
                          text=True)
    # verify exits 0 on unknown keys and bad values, printing them: any output at all is a finding
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    broken = tmp_path / "broken" / "query-gateway.service"
    broken.parent.mkdir()
    broken.write_text(local_unit(tmp_path).read_text().replace("ProtectSystem=", "ProtectSystm="))
    done = subprocess.run([str(systemd_analyze), "verify", str(broken)], capture_output=True, text=True)
    assert "Unknown key" in done.stderr


@pytest.mark.skipif(systemd_analyze is None, reason="systemd-analyze missing")
def test_systemd_exposure_is_low(tmp_path: Path) -> None:
    done = subprocess.run([str(systemd_analyze), "security", "--offline=yes", "--threshold=20",
                           str(local_unit(tmp_path))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, done.stdout


# -- runbooks ------------------------------------------------------------------------------------------------

RUNBOOK_PAGES = ("audit-store-down", "spool-filling", "redis-down", "backend-down", "policy-reload-rejected",
                 "budget-exceeded", "leak-reported", "auth-failure-spike", "replica-lost")


def gateway_sources() -> str:
    """The gateway's code, with implicitly concatenated string literals ("...; "\n "...") joined."""
    text = "\n".join(path.read_text() for path in (ROOT / "gateway").rglob("*.py"))
    return re.sub(r'"\s*\n\s*f?"', "", text)


@pytest.mark.parametrize("page", RUNBOOK_PAGES)
def test_runbook_names_real_metrics_logs_and_commands(page: str) -> None:
    text = (RUNBOOKS / f"{page}.md").read_text()
    exposed = exposed_series()
    metrics = set(re.findall(r"`(gateway_[a-z_]+)", text))
    assert metrics, f"{page}: names no metric"
    unknown = {name for name in metrics if name not in exposed and f"{name}_bucket" not in exposed}  # histograms
    assert not unknown, f"{page}: {sorted(unknown)}"
    sources = gateway_sources()
    # log lines and client errors are quoted as `> log: "..."` / `> error: "..."`, <placeholders> for the
    # variable parts; every fixed part must be a literal in the code
    quoted = re.findall(r'^> (?:log|error): "(.+)"$', text, flags=re.MULTILINE)
    assert quoted, f"{page}: quotes no log line or error"
    for line in quoted:
        fixed = [part for part in re.split(r"<[^>]+>", line) if part.strip()]
        assert all(part in sources for part in fixed), f"{page}: {line!r} is not in gateway/"
    # commands are the lines of ```sh blocks that start with `gateway`
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    commands = [line.split(" #")[0] for block in blocks for line in block.splitlines() if line.startswith("gateway ")]
    assert commands, f"{page}: names no gateway command"
    for command in commands:
        words = ["1" if w.startswith("<") else w for w in shlex.split(command)[1:]]  # <placeholder> -> a value
        try:
            _parser().parse_args(words)
        except SystemExit as error:
            pytest.fail(f"{page}: `{command}` is not a valid gateway command ({error})")


def test_every_runbook_is_linked_from_its_index() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    assert sorted(p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md") == sorted(RUNBOOK_PAGES)
    for page in RUNBOOK_PAGES:
        assert f"({page}.md)" in index, page

