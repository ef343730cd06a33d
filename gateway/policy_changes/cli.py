"""`gateway policy impact` and `gateway policy canaries`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.policy.load import PolicyError
from gateway.policy_changes import impact_cli
from gateway.policy_changes.canary_run import CanaryReport


def add_parsers(policy: Any) -> None:
    impact_cli.add_parser(policy)
    canaries = policy.add_parser("canaries", help="run policies/canaries.yaml once through the real pipeline "
                                                  "(backends, audit) of a config; exit 1 if one fails")
    canaries.add_argument("--policies", type=Path, help="policies directory (default: policies.dir)")
    canaries.add_argument("--config", type=Path)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.policy_command == "impact":
        return impact_cli.run(settings, args)
    return run_canaries(settings, args.policies)


def run_canaries(settings: Settings, directory: Path | None) -> int:
    policies = replace(settings.policies, dir=directory or settings.policies.dir, canary_interval_seconds=0)
    settings = replace(settings, policies=policies, server=replace(settings.server, pgwire_port=None))
    try:
        report = asyncio.run(_run_once(settings))
    except PolicyError as error:
        for message in error.errors:
            print(message, file=sys.stderr)
        return 2
    for result in report.results:
        state = "skip" if result.skipped else "ok" if result.passed else "FAIL"
        print(f"{state:4}  {result.name}: {result.detail}")
    failed = len(report.failures)
    print(f"{len(report.results)} canaries under policy version {report.policy_version[:12]}: {failed} failed",
          file=sys.stderr)
    return 1 if failed else 0


async def _run_once(settings: Settings) -> CanaryReport:
    from gateway.app import Gateway

    gateway = Gateway(settings)
    await gateway.start()  # runs the canaries once, as a starting gateway does
    try:
        assert gateway.canaries.latest is not None
        return gateway.canaries.latest
    finally:
        await gateway.stop()
