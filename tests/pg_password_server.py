"""A PostgreSQL server of a test's own that checks passwords (scram-sha-256).

The shared server on 127.0.0.1:5432 trusts every login, so a rotated password cannot be proven used (or the old
one refused) there. This one is a throwaway cluster (initdb in a temporary directory, a free port, fsync off)
run by the same PostgreSQL binaries, as the `postgres` OS user when the tests run as root (initdb refuses root).
`stop()` stops it and removes its directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from gateway.testing import HOST, free_port

SUPERUSER_PASSWORD = "su-" + uuid.uuid4().hex


def _bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else where pg_config says (Debian keeps them off PATH)."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return None
    try:
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


BINDIR = _bindir()


def _program(name: str) -> str:
    return str(BINDIR / name) if BINDIR is not None else name


def binaries_available() -> bool:
    return all(shutil.which(_program(name)) for name in ("initdb", "pg_ctl"))


class PasswordPostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="gw-pgauth-"))
        self.directory.chmod(0o755)
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        password_file = self.directory / "superuser-password"
        password_file.write_text(SUPERUSER_PASSWORD + "\n")
        if self._as_user:
            shutil.chown(self.directory, "postgres")
            shutil.chown(password_file, "postgres")
        data = self.directory / "data"
        try:
            self._run("initdb", "-D", str(data), "--auth=scram-sha-256", f"--pwfile={password_file}",
                      "-U", "postgres", "-N", "-E", "UTF8")
            self._run("pg_ctl", "-D", str(data), "-l", str(self.directory / "server.log"), "-w", "-o",
                      f"-p {self.port} -k {self.directory} -c listen_addresses={HOST} -c fsync=off "
                      f"-c max_connections=60", "start")
        except BaseException:
            self.stop()
            raise

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as_user, _program(argv[0]), *argv[1:]], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def dsn(self, user: str = "postgres", password: str | None = None, database: str = "postgres") -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@{HOST}:{self.port}/{database}"

    @property
    def admin_dsn(self) -> str:
        return self.dsn(password=SUPERUSER_PASSWORD)

    def psql(self, sql: str) -> str:
        done = subprocess.run(["psql", self.admin_dsn, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()

    def stop(self) -> None:
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as_user, _program("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
