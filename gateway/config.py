"""gateway.yaml -> typed settings: the sections composed into one `Settings`.

Every key is optional; no file at all gives the embedded demo. Any key can be overridden by an environment
variable `GATEWAY__SECTION__KEY` (`GATEWAY__SERVER__PORT=8181`, `GATEWAY__BACKENDS__DEMO__PATH=/d.duckdb`);
its value is read as YAML, so numbers and booleans keep their type. Relative paths are relative to the config
file's folder (or to the working directory when there is no file). Errors name the file, line and key:

    gateway.yaml:12: backends.demo.type: unknown backend 'duckbd' (expected one of: duckdb, postgres)

Each section's settings and defaults belong to the package that uses them (`gateway/<package>/settings.py`,
or the module itself for one-module concerns); `gateway/config_reader.py` reads them all the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.settings import AuditSettings, read_audit
from gateway.backends.settings import BACKEND_TYPES, BackendSettings, default_backends, read_backends
from gateway.cache.settings import CacheSettings, read_cache
from gateway.catalog import MetadataSettings, read_metadata
from gateway.config_reader import ConfigError, Reader, Source, apply_environment, closest, read_yaml
from gateway.console.settings import ConsoleSettings, read_console
from gateway.cost.settings import CostSettings, read_cost
from gateway.frontends.settings import ProtocolSettings, ServerSettings, read_protocol, read_server
from gateway.grants.settings import AccessRequestSettings, read_access_requests
from gateway.identity.settings import (
    IDENTITY_MODES,
    JWT_ALGORITHMS,
    ApiKeySettings,
    ClaimSettings,
    FailureLimitSettings,
    IdentitySettings,
    JwtSettings,
    read_identity,
)
from gateway.lineage.settings import LineageSettings, read_lineage
from gateway.logs import LOG_FORMATS, LoggingSettings, read_logging
from gateway.mask_key import MaskingSettings, read_masking
from gateway.policy.settings import PolicySettings, read_policies
from gateway.sql.limits import LimitSettings, read_limits
from gateway.workload.settings import WorkloadSettings, read_workload

__all__ = [
    "BACKEND_TYPES", "IDENTITY_MODES", "JWT_ALGORITHMS", "LOG_FORMATS", "ApiKeySettings", "AuditSettings",
    "BackendSettings", "CacheSettings", "ClaimSettings", "ConfigError", "CostSettings", "FailureLimitSettings",
    "IdentitySettings", "JwtSettings", "LimitSettings", "LoggingSettings", "MaskingSettings", "MetadataSettings",
    "PolicySettings", "ProtocolSettings", "ServerSettings", "Settings", "WorkloadSettings", "load_settings",
]


@dataclass(frozen=True, kw_only=True)
class Settings:
    source: str = "<defaults>"
    server: ServerSettings = field(default_factory=ServerSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    backends: tuple[BackendSettings, ...] = ()
    policies: PolicySettings = field(default_factory=PolicySettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    cost: CostSettings = field(default_factory=CostSettings)
    masking: MaskingSettings = field(default_factory=MaskingSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    access_requests: AccessRequestSettings = field(default_factory=AccessRequestSettings)
    lineage: LineageSettings = field(default_factory=LineageSettings)

    @property
    def default_catalog(self) -> str:
        return self.backends[0].name


# Section name -> its reader, in the order problems are reported.
SECTIONS: dict[str, Callable[[Reader, Mapping[str, Any]], Any]] = {
    "server": read_server,
    "protocol": read_protocol,
    "backends": read_backends,
    "policies": read_policies,
    "identity": read_identity,
    "logging": read_logging,
    "metadata": read_metadata,
    "limits": read_limits,
    "audit": read_audit,
    "workload": read_workload,
    "cache": read_cache,
    "cost": read_cost,
    "masking": read_masking,
    "console": read_console,
    "access_requests": read_access_requests,
    "lineage": read_lineage,
}


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `path` (optional) and the environment; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    name = str(path) if path is not None else "<defaults>"
    source = Source(name=name)
    data: dict[str, Any] = read_yaml(path, source) if path is not None else {}
    base = path.resolve().parent if path is not None else Path.cwd()
    if "backends" not in data:
        data["backends"] = default_backends(base)
    apply_environment(data, environ, source)
    errors: list[str] = []
    reader = Reader(source, errors, base)
    for key in data:
        if key not in SECTIONS:
            hint = closest(key, SECTIONS)
            reader.fail((key,), f"unknown section{f' (did you mean {hint!r}?)' if hint else ''}")
    sections = {key: read(reader, data) for key, read in SECTIONS.items()}
    if (sections["server"].workers or 1) > 1 and sections["workload"].redis is None:
        reader.fail(("server", "workers"), "more than 1 worker needs workload.redis (the workers share admission, "
                    "paging and kills through it); set workload.redis or server.workers: 1")
    if errors:
        raise ConfigError(errors)
    return Settings(source=name, **sections)
