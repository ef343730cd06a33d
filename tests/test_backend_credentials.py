"""Backend secrets from the environment, files (a Kubernetes-style symlink swap) and commands; never shown.

Real files, real symlinks and real processes; the clock of the file and command sources is the test's own, so
"re-read only after check_seconds" is checked without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.credentials import (
    CredentialError,
    Secret,
    SecretSpec,
    parse_secret_spec,
    secret_source,
    secret_version,
)
from gateway.config import ConfigError, load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def kubernetes_secret(mount: Path, value: str, generation: int) -> Path:
    """The layout kubelet writes for a mounted Secret: `password -> ..data/password`, `..data -> ..<gen>`;
    an update writes a new `..<gen>` directory and swaps `..data` atomically (rename of a new link)."""
    version_dir = mount / f"..2026_12_02_{generation:04d}"
    version_dir.mkdir(parents=True)
    (version_dir / "password").write_text(value)
    temporary = mount / "..data_tmp"
    temporary.symlink_to(version_dir.name)
    os.replace(temporary, mount / "..data")
    link = mount / "password"
    if not link.is_symlink():
        link.symlink_to("..data/password")
    return link


def spec(raw: object, base: Path = Path("/")) -> SecretSpec:
    parsed = parse_secret_spec(raw, base=base)
    assert isinstance(parsed, SecretSpec), parsed
    return parsed


def test_environment_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_PG_PASSWORD", "s3cret\n")
    source = secret_source(spec({"env": "GW_TEST_PG_PASSWORD"}))
    secret = asyncio.run(source.current())
    assert secret.value == "s3cret" and secret.version == secret_version("s3cret")
    monkeypatch.delenv("GW_TEST_PG_PASSWORD")
    with pytest.raises(CredentialError, match="environment variable GW_TEST_PG_PASSWORD: the variable is not set"):
        asyncio.run(source.current())


def test_file_secret_follows_a_symlink_swap_and_is_checked_at_most_every_check_seconds(tmp_path: Path) -> None:
    link = kubernetes_secret(tmp_path, "first-password", 1)
    clock = Clock()
    source = secret_source(spec({"file": str(link), "check_seconds": 5}), clock=clock)

    async def scenario() -> None:
        first = await source.current()
        assert first.value == "first-password"
        kubernetes_secret(tmp_path, "second-password", 2)
        clock.now = 4.9
        assert (await source.current()) == first  # not checked again yet
        clock.now = 5.0
        second = await source.current()
        assert second.value == "second-password" and second.version != first.version
        kubernetes_secret(tmp_path, "second-password", 3)  # a new inode, the same secret
        clock.now = 10.0
        assert (await source.current()).version == second.version
        kubernetes_secret(tmp_path, "third-password", 4)
        source.invalidate()  # the server refused the secret: no waiting for check_seconds
        assert (await source.current()).value == "third-password"

    asyncio.run(scenario())


def test_file_secret_problems_name_the_file_never_the_content(tmp_path: Path) -> None:
    missing = secret_source(spec({"file": str(tmp_path / "absent")}))
    with pytest.raises(CredentialError, match=r"file .*absent: cannot read the file"):
        asyncio.run(missing.current())
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(CredentialError, match="the secret is empty"):
        asyncio.run(secret_source(spec({"file": str(empty)})).current())


def command(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "print-secret.py"
    script.write_text(body)
    return [sys.executable, str(script)]


def test_command_secret_is_cached_for_refresh_seconds(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    argv = command(tmp_path, f"import pathlib\np = pathlib.Path({str(counter)!r})\n"
                             "runs = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(runs))\n"
                             "print(f'password-{runs}')\n")
    clock = Clock()
    source = secret_source(spec({"command": argv, "refresh_seconds": 60}), clock=clock)

    async def scenario() -> None:
        assert (await source.current()).value == "password-1"
        clock.now = 59
        assert (await source.current()).value == "password-1"
        clock.now = 60
        assert (await source.current()).value == "password-2"
        source.invalidate()
        assert (await source.current()).value == "password-3"
        # concurrent callers share one run
        clock.now = 200
        values = await asyncio.gather(*(source.current() for _ in range(10)))
        assert {v.value for v in values} == {"password-4"}

    asyncio.run(scenario())
    assert counter.read_text() == "4"


def test_a_failing_command_is_named_and_its_output_never_shown(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    leaked = "token-that-must-not-leak-91ab"
    argv = command(tmp_path, f"import sys\nprint({leaked!r})\nprint('denied: ' + {leaked!r}, file=sys.stderr)\n"
                             "sys.exit(3)\n")
    source = secret_source(spec({"command": argv}))
    with caplog.at_level(logging.DEBUG), pytest.raises(CredentialError) as error:
        asyncio.run(source.current())
    assert error.value.message == f"Backend credentials from command {Path(sys.executable).name}: it exited with " \
                                  "status 3"
    assert leaked not in caplog.text and leaked not in str(error.value)
    slow = secret_source(spec({"command": command(tmp_path, "import time\ntime.sleep(30)\n"),
                               "timeout_seconds": 0.3}))
    with pytest.raises(CredentialError, match=r"no answer within 0\.3s"):
        asyncio.run(slow.current())
    absent = secret_source(spec({"command": [str(tmp_path / "no-such-program")]}))
    with pytest.raises(CredentialError, match="command no-such-program: cannot run it"):
        asyncio.run(absent.current())


@pytest.mark.parametrize(("raw", "problem"), [
    ("PGPASSWORD", "must be a mapping"),
    ({}, "exactly one of env, file, command"),
    ({"env": "A", "file": "/x"}, "exactly one of env, file, command"),
    ({"env": ""}, "env must name an environment variable"),
    ({"command": "vault read x"}, "command must be a list"),
    ({"command": ["vault"], "check_seconds": 1}, "unknown key 'check_seconds' for a command secret"),
    ({"file": "/x", "check_seconds": 0}, "check_seconds must be a positive number"),
    ({"file": "/x", "check_seconds": True}, "check_seconds must be a positive number"),
])
def test_secret_specs_are_checked(raw: object, problem: str) -> None:
    parsed = parse_secret_spec(raw, base=Path("/etc/gateway"))
    assert isinstance(parsed, str) and problem in parsed


def test_relative_secret_files_are_relative_to_the_config(tmp_path: Path) -> None:
    assert spec({"file": "secrets/pg"}, base=tmp_path).file == tmp_path / "secrets" / "pg"


def write_config(tmp_path: Path, backend: dict[str, object]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": {"pg": {"type": "postgres",
                                                        "dsn": "postgresql://reader@127.0.0.1:5432/db",
                                                        **backend}}}))
    return path


def test_backend_settings_take_secrets_and_operations_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"password": {"file": "pg-password", "check_seconds": 2},
                                   "credentials": {"private_key": {"env": "PG_KEY"}},
                                   "pool_timeout_seconds": 3, "circuit": {"failures": 2},
                                   "retries": {"attempts": 1}})
    backend = load_settings(path, environ={}).backends[0]
    assert backend.password == SecretSpec(kind="file", file=tmp_path / "pg-password", check_seconds=2)
    assert backend.credentials == {"private_key": SecretSpec(kind="env", env="PG_KEY")}
    assert backend.pool_timeout_seconds == 3
    assert backend.resilience.circuit.failures == 2 and backend.resilience.retries.attempts == 1


@pytest.mark.parametrize(("backend", "problem"), [
    ({"dsn": "postgresql://reader:pw@127.0.0.1/db", "password": {"env": "X"}}, "given twice"),
    ({"password": {"vault": "x"}}, "exactly one of env, file, command"),
    ({"credentials": ["x"]}, "must map secret kinds"),
    ({"circuit": {"failures": 0}}, "circuit.failures must be positive"),
    ({"pool_timeout_seconds": 0}, "pool_timeout_seconds"),
])
def test_backend_settings_problems_are_reported(tmp_path: Path, backend: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(write_config(tmp_path, backend), environ={})


def test_a_duckdb_backend_takes_no_password(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": {"demo": {"type": "duckdb", "path": "demo.duckdb",
                                                          "password": {"env": "X"}}}}))
    with pytest.raises(ConfigError, match="password: is not used by a duckdb backend"):
        load_settings(path, environ={})


secret_text = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_characters="'\"\\"),
                      min_size=8, max_size=40)


@settings(max_examples=60, deadline=None)
@given(secret_text)
def test_no_repr_shows_a_secret(value: str) -> None:
    secret = Secret(value, secret_version(value))
    assert value not in repr(secret) and value not in str(secret)
    for raw in ({"command": ["vault", "read", f"--token={value}"]}, {"env": "PGPASSWORD"}):
        assert value not in repr(spec(raw))


def test_gateway_config_never_prints_a_secret(tmp_path: Path) -> None:
    token = "tok-" + os.urandom(8).hex()
    dsn_password = "dsn-" + os.urandom(8).hex()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": {
        "pg": {"type": "postgres", "dsn": "postgresql://reader@127.0.0.1:5432/db",
               "password": {"command": ["vault", "kv", "get", f"-token={token}", "secret/pg"]}},
        "pg2": {"type": "postgres", "dsn": f"postgresql://reader:{dsn_password}@127.0.0.1:5432/db"}}}))
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SecretSpec(command='vault' (+4 args)" in done.stdout
    assert token not in done.stdout + done.stderr and dsn_password not in done.stdout + done.stderr
