"""gateway.yaml loading: defaults, environment overrides, and errors that name file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backends.settings import ENGINE_KEYS
from gateway.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_no_file_gives_the_embedded_demo(tmp_path: Path) -> None:
    settings = load_settings(None, environ={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    demo = settings.backends[0]
    assert (demo.name, demo.type, demo.schema, demo.tpch_scale) == ("demo", "duckdb", "tpch", 0.01)
    assert settings.identity.mode == "dev"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  wh: {type: duckdb, path: data/wh.duckdb}\n")
    settings = load_settings(path, environ={})
    assert settings.backends[0].path == tmp_path / "data" / "wh.duckdb"
    assert settings.default_catalog == "wh"


def test_environment_overrides_keep_types(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 9000}\n")
    settings = load_settings(path, environ={"GATEWAY__SERVER__PORT": "8181", "GATEWAY__LOGGING__FORMAT": "json",
                                            "GATEWAY__BACKENDS__DEMO__TPCH_SCALE": "0.1"})
    assert settings.server.port == 8181
    assert settings.logging.format == "json"
    assert settings.backends[0].tpch_scale == 0.1


def config_errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    return error.value.messages


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: 127.0.0.1\n  port: eighty\nbackends:\n  demo:\n    type: duckbd\n"
                           "    path: x.duckdb\nidentity: {mode: jwtt}\nlogging:\n  formt: json\n")
    messages = config_errors(path)
    assert f"{path}:3: server.port: must be an integer, not 'eighty'" in messages
    assert (f"{path}:6: backends.demo.type: unknown backend 'duckbd' "
            "(expected one of: duckdb, postgres, trino, snowflake)" in messages)
    assert any(m.startswith(f"{path}:8: identity.mode: unknown identity mode 'jwtt'") for m in messages)
    assert f"{path}:10: logging.formt: unknown key (did you mean 'format'?)" in messages


def test_duckdb_isolation_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  demo: {type: duckdb, path: x.duckdb, isolation: process}\n")
    assert load_settings(path, environ={}).backends[0].isolation == "process"
    path = write(tmp_path, "backends:\n  demo: {type: duckdb, path: x.duckdb, isolation: processes}\n"
                           "  pg: {type: postgres, dsn: 'postgresql://u@h/d', isolation: process}\n")
    messages = config_errors(path)
    assert f"{path}:2: backends.demo.isolation: unknown isolation 'processes' (expected one of: thread, process)" \
        in messages
    assert f"{path}:3: backends.pg.isolation: applies to duckdb backends only, not to postgres" in messages


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, environ={"GATEWAY__SERVER__PORT": "99999"})
    assert error.value.messages == ["environment GATEWAY__SERVER__PORT: server.port: must be a port number "
                                    "(0-65535), not 99999"]


def test_invalid_yaml_and_unknown_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "server: [1, 2\n"), environ={})
    assert error.value.messages[0].startswith(f"{tmp_path / 'gateway.yaml'}:")
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "servr: {}\n"), environ={})
    assert error.value.messages == [f"{tmp_path / 'gateway.yaml'}:1: servr: unknown section (did you mean 'server'?)"]


def test_reserved_catalog_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "backends:\n  system: {type: duckdb, path: a.duckdb}\n"), environ={})
    assert "reserved" in error.value.messages[0]


def test_cli_prints_config_errors_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: -1}\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}:1: server.port: must be a port number" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_mode_refuses_a_public_address(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {host: 0.0.0.0, port: 0}\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "allow_dev_on_public_host" in result.stderr


def test_resource_bounds_are_read_checked_and_defaulted_safely(tmp_path: Path) -> None:
    defaults = load_settings(None, environ={})
    assert defaults.backends[0].memory_limit == 2 * 1024**3
    assert (defaults.server.header_timeout_seconds, defaults.server.body_timeout_seconds,
            defaults.server.max_connections) == (10.0, 30.0, 4096)
    assert (defaults.limits.max_statement_bytes, defaults.limits.max_boolean_terms) == (256 * 1024, 500)
    path = write(tmp_path, "backends:\n  demo: {type: duckdb, path: d.duckdb, memory_limit: 512MB}\n"
                           "limits: {max_statement_bytes: 64KB, max_result_bytes: 1GB, planning_threads: 4}\n"
                           "server: {header_timeout_seconds: 2.5, max_connections: 100}\n"
                           "cache: {coalesce_stall_seconds: 0.5}\n")
    settings = load_settings(path, environ={})
    assert settings.backends[0].memory_limit == 512 * 1024**2
    assert (settings.limits.max_statement_bytes, settings.limits.max_result_bytes) == (64 * 1024, 1024**3)
    assert settings.limits.planning_threads == 4
    assert (settings.server.header_timeout_seconds, settings.server.max_connections) == (2.5, 100)
    assert settings.cache.coalesce_stall_seconds == 0.5
    bad = write(tmp_path, "backends:\n  demo: {type: duckdb, path: d.duckdb, memory_limit: lots}\n"
                          "limits: {max_boolean_term: 10, max_nesting_depth: 0}\nserver: {max_connections: -1}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(bad, environ={})
    text = "\n".join(error.value.messages)
    assert "backends.demo.memory_limit: must be a size such as 1048576, 64MB or 1GB, not 'lots'" in text
    assert "limits.max_boolean_term: unknown key (did you mean 'max_boolean_terms'?)" in text
    assert "limits.max_nesting_depth:" in text and "server.max_connections:" in text


def test_postgres_backends(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  wh:\n    type: postgres\n    dsn: postgresql://reader@db:5432/wh\n"
                           "    schemas: [sales, finance]\n    pool_size: 8\n    explain_analyze: true\n"
                           "  demo: {type: duckdb, path: d.duckdb}\n")
    settings = load_settings(path, environ={})
    wh = settings.backends[0]
    assert (wh.type, wh.dsn, wh.schemas, wh.pool_size, wh.explain_analyze, wh.schema) == (
        "postgres", "postgresql://reader@db:5432/wh", ("sales", "finance"), 8, True, "public")
    assert settings.default_catalog == "wh"


def test_postgres_backend_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  wh:\n    type: postgres\n  w2: {type: postgres, dsn: 'mysql://x:secret@h/d',"
                           " pool_size: 0, schemas: []}\n")
    messages = config_errors(path)
    assert f"{path}:2: backends.wh.dsn: is required for a postgres backend" in messages
    assert f"{path}:4: backends.w2.dsn: must be a postgresql:// URL, not 'mysql://x:***@h/d'" in messages
    assert any("backends.w2.pool_size: must be greater than 0" in m for m in messages)
    assert any("backends.w2.schemas: must be a list of schema names" in m for m in messages)
    assert not any("secret" in m for m in messages)


@given(password=st.text(alphabet=st.characters(blacklist_characters="@/?#&\n\r", blacklist_categories=("Cs",)),
                        min_size=4, max_size=30),
       in_query=st.booleans())
def test_backend_dsn_passwords_never_show(password: str, in_query: bool) -> None:
    from urllib.parse import quote

    secret = "Zq9" + quote(password, safe="")  # a marker: short passwords occur in other settings
    dsn = (f"postgresql://reader@db:5432/wh?sslmode=require&password={secret}" if in_query
           else f"postgresql://reader:{secret}@db:5432/wh")
    settings = load_settings(None, environ={"GATEWAY__BACKENDS__WH__TYPE": "postgres",
                                            "GATEWAY__BACKENDS__WH__DSN": repr(dsn)})
    shown = repr(settings)
    assert secret not in shown and "reader" in shown and "db:5432/wh" in shown


def test_config_command_masks_the_dsn(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  wh: {type: postgres, dsn: 'postgresql://reader:hunter2x@db/wh'}\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "postgresql://reader:***@db/wh" in done.stdout and "hunter2x" not in done.stdout


ENGINE_ONLY_KEYS = sorted(ENGINE_KEYS["trino"] | ENGINE_KEYS["snowflake"])


@given(kind=st.sampled_from(["duckdb", "postgres", "trino", "snowflake"]), key=st.sampled_from(ENGINE_ONLY_KEYS))
def test_an_engine_key_on_another_engines_backend_is_refused(kind: str, key: str) -> None:
    environ = {"GATEWAY__BACKENDS__B__TYPE": kind, f"GATEWAY__BACKENDS__B__{key.upper()}": "x"}
    try:
        load_settings(None, environ=environ)
        messages: list[str] = []
    except ConfigError as error:
        messages = error.messages
    misplaced = [m for m in messages if f"backends.b.{key}: applies to" in m]
    assert bool(misplaced) == (key not in ENGINE_KEYS.get(kind, frozenset()))
