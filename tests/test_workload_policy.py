"""policies/workload.yaml: loading with file:line errors, and group selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.load import PolicyError, load_policies
from gateway.units import parse_duration, parse_size
from gateway.workload.load import load_workload, parse_workload
from gateway.workload.model import UNLIMITED
from gateway.workload.select import QueryFacts, select_group

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def facts(user: str = "u", groups: tuple[str, ...] = (), source: str | None = None, tags: tuple[str, ...] = (),
          query_type: str = "SELECT") -> QueryFacts:
    return QueryFacts(user=user, groups=frozenset(groups), source=source, client_tags=frozenset(tags),
                      query_type=query_type)


def errors_of(text: str, **others: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_workload({"workload.yaml": text, **others})
    return list(caught.value.errors)


def test_the_demo_workload_loads_and_routes_bi_tools_first() -> None:
    policy = load_workload(POLICIES)
    assert [g.name for g in policy.groups] == ["dashboards", "adhoc", "default", "throttled"]
    assert policy.max_total_concurrency == 10
    dashboards = policy.groups[0]
    assert (dashboards.priority, dashboards.max_concurrency, dashboards.max_queued) == (10, 8, 200)
    assert (dashboards.queue_timeout, dashboards.max_execution_time, dashboards.cache_ttl) == (30, 60, 300)
    assert dashboards.max_result_rows == 100000
    assert policy.group("adhoc") is not None and policy.groups[1].max_scan_bytes == 2 * 1024**3
    assert select_group(policy, facts(groups=("bi",))) is dashboards
    assert select_group(policy, facts(source="Superset 4.1")) is dashboards
    assert select_group(policy, facts(source="trino-cli")).name == "adhoc"  # type: ignore[union-attr]
    assert select_group(policy, facts(tags=("adhoc", "x"))).name == "adhoc"  # type: ignore[union-attr]
    assert select_group(policy, facts(source="trino-python-client")).name == "default"  # type: ignore[union-attr]
    load_policies(POLICIES)  # the table-policy loader accepts the file (its sections are foreign there)


def test_selectors_match_as_trino_does() -> None:
    policy = parse_workload({"w.yaml": """
resource_groups:
  - {name: a, max_concurrency: 1, max_queued: 1, selectors: [{user: [ann, al], source: "jdbc.*"}]}
  - {name: b, max_concurrency: 1, max_queued: 1, selectors: [{client_tags: [x, y]}]}
  - {name: c, max_concurrency: 1, max_queued: 1, selectors: [{query_type: [explain, describe]}]}
  - {name: d, max_concurrency: 1, max_queued: 1, selectors: [{groups: [g1]}]}
"""})
    def name(f: QueryFacts) -> str | None:
        group = select_group(policy, f)
        return group.name if group else None

    assert name(facts("ann", source="jdbc-driver")) == "a"
    assert name(facts("ann", source="my jdbc")) is None  # the regex must match the whole source
    assert name(facts("ann")) is None  # no source: a source selector never matches
    assert name(facts(tags=("y", "x", "z"))) == "b"
    assert name(facts(tags=("x",))) is None  # every tag must be present
    assert name(facts(query_type="EXPLAIN")) == "c"
    assert name(facts(groups=("g0", "g1"))) == "d"
    assert name(facts(groups=("g0",))) is None  # no match: the pipeline rejects (QUERY_REJECTED)


def test_without_resource_groups_nothing_is_limited(tmp_path: Path) -> None:
    (tmp_path / "tables.yaml").write_text("tables: []\n")
    assert load_workload(tmp_path) is UNLIMITED
    assert parse_workload({}) is UNLIMITED


def test_every_mistake_is_reported_with_file_and_line() -> None:
    errors = errors_of("""resource_groups:
  - name: a
    max_concurrency: 0
    max_queued: 1
    queue_timeout: soon
    priority: 5000
    selectors: [{}]
  - name: a
    max_concurency: 2
    max_queued: 1
    selectors: [{sourc: x}]
  - name: b c
    max_concurrency: 2
    max_concurrency_per_user: 3
    max_queued: -1
    max_scan_bytes: lots
    selectors: [{source: "("}, {query_type: INSERT}, {groups: []}]
""")
    assert "workload.yaml:3: max_concurrency must be at least 1, not 0" in errors
    assert "workload.yaml:5: queue_timeout must be a positive duration like 500ms, 30s, 2m, 1h" in errors
    assert "workload.yaml:6: priority must be at least 0 and at most 1000, not 5000" in errors
    assert "workload.yaml:9: unknown key 'max_concurency' in resource group" in errors
    assert "workload.yaml:8: resource group is missing 'max_concurrency'" in errors
    assert any(e.startswith("workload.yaml:12: group name 'b c'") for e in errors)
    assert "workload.yaml:14: max_concurrency_per_user is larger than max_concurrency" in errors
    assert "workload.yaml:15: max_queued must be at least 0, not -1" in errors
    assert any(e.startswith("workload.yaml:16: max_scan_bytes must be a positive size") for e in errors)
    assert any(e.startswith("workload.yaml:17: source is not a valid regular expression") for e in errors)
    assert any(e.startswith("workload.yaml:17: unknown query_type 'INSERT'") for e in errors)
    assert any("empty list in a selector" in e for e in errors)


def test_duplicates_and_sections_in_two_files_are_refused() -> None:
    group = "  - {name: a, max_concurrency: 1, max_queued: 1, selectors: [{}]}\n"
    errors = errors_of("resource_groups:\n" + group + group)
    assert any(e.startswith("workload.yaml:3: duplicate resource group 'a' (first at workload.yaml:2)") for e in errors)
    errors = errors_of("resource_groups:\n" + group, **{"z.yaml": "resource_groups:\n" + group})
    assert errors == ["z.yaml:1: 'resource_groups' is already defined at workload.yaml:2"]
    assert errors_of("capacity: {max_concurrency: 2}\n") == ["workload.yaml:1: capacity without resource_groups"]
    assert errors_of("resource_groups: []\n") == [
        "workload.yaml:1: resource_groups must be a non-empty list of groups"]
    assert errors_of("resource_groups:\n  - {name: a, max_concurrency: 1, max_queued: 1, selectors: []}\n") == [
        "workload.yaml:2: selectors must be a non-empty list ([{}] matches every query)"]


def test_a_yaml_error_never_means_unlimited() -> None:
    errors = errors_of("resource_groups:\n  - name: [a\n")
    assert errors and errors[0].startswith("workload.yaml:")


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1.5h", 5400),
                                               ("1d", 86400), (45, 45), ("0s", None), ("5 minutes", None)])
def test_durations(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("512MB", 512 * 1024**2), ("10gb", 10 * 1024**3), (4096, 4096),
                                            ("1.5KB", 1536), ("0B", None), ("big", None)])
def test_sizes(text: object, size: int | None) -> None:
    assert parse_size(text) == size


def test_max_result_bytes_is_a_size_per_group() -> None:
    policy = parse_workload({"w.yaml": """
resource_groups:
  - {name: a, max_concurrency: 1, max_queued: 1, max_result_bytes: 200KB, selectors: [{}]}
  - {name: b, max_concurrency: 1, max_queued: 1, selectors: [{}]}
"""})
    assert [g.max_result_bytes for g in policy.groups] == [200 * 1024, None]  # None: limits.max_result_bytes
    with pytest.raises(PolicyError) as error:
        parse_workload({"w.yaml": "resource_groups:\n  - {name: a, max_concurrency: 1, max_queued: 1, "
                                  "max_result_bytes: huge, selectors: [{}]}\n"})
    assert "w.yaml:2:" in str(error.value) and "max_result_bytes" in str(error.value)
