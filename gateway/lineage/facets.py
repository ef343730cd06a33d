"""The OpenLineage run of one statement, built from its outcome: pure (no I/O), so what an event says is
tested without a transport.

Each statement that read tables is one run of one job; the spec's run cycle wants at least a START and a
terminal event, so each run is two events built together when the attempt ends: START at the time the
statement was received, then COMPLETE, FAIL or ABORT (cancelled) at its end, sharing a runId (a UUIDv7 from
the received time and the query id). What they carry:

    job       namespace (lineage.namespace), name (lineage.job_name), facets sql (the CLIENT's statement,
              `Facts.shown_sql`; never the rewritten SQL, which holds bound identity attributes and the mask
              key's sentinel) and jobType
    inputs    every table the planner resolved, named per the OpenLineage naming spec (naming.py), with a
              schema facet of the columns read
    outputs   the result set, a dataset of the gateway's endpoint named after the job, with its schema and
              the columnLineage facet (columns.py): direct inputs per output column, masking where a
              column mask applied, and the filter/join/group/sort columns as dataset-level inputs
    run       queryGateway (query id, user, principal, source, cost center, policy version, the mask and
              row filter rule NAMES applied — never a bound value), processing_engine, errorMessage on FAIL
              (the client's message; its quoted values redacted with the SQL's literals)

The custom facets' JSON schema is docs/lineage-facets.json.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.uuid import generate_static_uuid

from gateway.audit.record import redact_message
from gateway.catalog import INFORMATION_SCHEMA, SYSTEM_CATALOG
from gateway.errors import QueryCanceled
from gateway.lineage.columns import ColumnLineage, SourceColumn
from gateway.lineage.naming import DatasetNames
from gateway.lineage.settings import LineageSettings
from gateway.query_outcome import QueryOutcome

FACETS_SCHEMA = "https://github.com/query-gateway/query-gateway/blob/main/docs/lineage-facets.json"
LINEAGE_KINDS = frozenset({"select", "execute"})  # statements that read data; SHOW, EXPLAIN, SET... read none
_MASK_RULE = re.compile(r"^mask (?P<table>[^.]+\.[^.]+\.[^.]+)\.(?P<column>.+):[^:]+$")


@attr.define
class QueryGatewayRunFacet(RunFacet):
    """Who ran the statement and under which policy: the governance facts of the run."""

    queryId: str
    user: str
    principal: str | None = attr.field(default=None)  # who authenticated, when it ran as someone else
    source: str | None = attr.field(default=None)
    costCenter: str | None = attr.field(default=None)
    catalog: str | None = attr.field(default=None)
    policyVersion: str | None = attr.field(default=None)
    masksApplied: list[str] = attr.field(factory=list)
    rowFiltersApplied: list[str] = attr.field(factory=list)
    resourceGroup: str | None = attr.field(default=None)
    cacheHit: bool = attr.field(default=False)
    state: str = attr.field(default="FINISHED")

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA}#/$defs/QueryGatewayRunFacet"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the outcome does not hold: known to the emitter when the attempt ended."""

    finished_at: datetime
    cost_center: str | None
    version: str  # the gateway's
    sql: str  # the client's statement text (for EXECUTE, the prepared statement's)
    shown_sql: str  # what the sql facet says: `sql`, its literals redacted unless lineage.redact_literals: false
    lineage: ColumnLineage | None
    column_types: Mapping[str, Mapping[str, str]]  # table -> {column: type}, of the tables read


def emits(outcome: QueryOutcome) -> bool:
    """Whether the attempt is a run: a query that reads at least one data table and reached its backend (or
    was answered from the result cache). One refused at admission or cancelled while queued read nothing."""
    return (outcome.statement_kind in LINEAGE_KINDS and (outcome.backend is not None or outcome.cache_hit)
            and any(not _is_metadata(t) for t in outcome.tables or ()))


def masked_columns(rules: Sequence[str]) -> set[tuple[str, str]]:
    """(table, column) of each `mask <table>.<column>:<how>` rule the rewrite applied."""
    return {(m["table"], m["column"]) for r in rules if (m := _MASK_RULE.match(r)) is not None}


def job_name(outcome: QueryOutcome, facts: Facts, template: str) -> str:
    statement = hashlib.sha256(" ".join(facts.sql.split()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return template.format(source=outcome.session.source or "unknown", statement=statement,
                           user=outcome.identity.user, catalog=outcome.backend or outcome.session.catalog or "",
                           kind=outcome.statement_kind, query_id=outcome.query_id)


def run_events(outcome: QueryOutcome, facts: Facts, *, settings: LineageSettings,
               names: DatasetNames, gateway_namespace: str) -> tuple[RunEvent, RunEvent]:
    """START and the terminal event of the statement's run."""
    producer = settings.producer
    received = datetime.fromisoformat(outcome.received_at.replace("Z", "+00:00"))
    run_id = str(generate_static_uuid(instant=received, data=outcome.query_id.encode()))
    name = job_name(outcome, facts, settings.job_name)
    job = Job(namespace=settings.namespace, name=name, facets=_job_facets(outcome, facts, settings))
    inputs = [_input(table, outcome, facts, names, producer) for table in outcome.tables or ()
              if not _is_metadata(table)]
    governance = _governance(outcome, facts, producer)
    start = RunEvent(eventType=RunState.START, eventTime=received.isoformat(), producer=producer,
                     run=Run(runId=run_id, facets={"queryGateway": governance}), job=job, inputs=inputs)
    run_facets: dict[str, RunFacet] = {
        "queryGateway": governance,
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=facts.version, name="query-gateway", producer=producer),
    }
    error = outcome.error
    if error is not None and not isinstance(error, QueryCanceled):
        message = redact_message(error.message) if settings.redact_literals else error.message
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=f"{error.error_name}: {message}", programmingLanguage="SQL", producer=producer)
    state = RunState.COMPLETE if error is None else (
        RunState.ABORT if isinstance(error, QueryCanceled) else RunState.FAIL)
    end = RunEvent(eventType=state, eventTime=facts.finished_at.isoformat(), producer=producer,
                   run=Run(runId=run_id, facets=run_facets), job=job, inputs=inputs,
                   outputs=[_output(name, facts, names, gateway_namespace, producer)])
    return start, end


def _is_metadata(table: str) -> bool:
    catalog, schema, _ = table.split(".", 2)
    return catalog == SYSTEM_CATALOG or schema in (INFORMATION_SCHEMA, "pg_catalog")


def _job_facets(outcome: QueryOutcome, facts: Facts, settings: LineageSettings) -> dict[str, JobFacet]:
    return {
        "sql": sql_job.SQLJobFacet(query=facts.shown_sql, dialect=outcome.session.dialect, producer=settings.producer),
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="QUERY_GATEWAY",
                                                jobType="QUERY", producer=settings.producer),
    }


def _governance(outcome: QueryOutcome, facts: Facts, producer: str) -> QueryGatewayRunFacet:
    rules = outcome.rules
    return QueryGatewayRunFacet(
        queryId=outcome.query_id, user=outcome.identity.user,
        principal=outcome.principal.user if outcome.principal.user != outcome.identity.user else None,
        source=outcome.session.source, costCenter=facts.cost_center,
        catalog=outcome.backend or outcome.session.catalog, policyVersion=outcome.policy_version,
        masksApplied=[r for r in rules if r.startswith("mask ")],
        rowFiltersApplied=[r for r in rules if r.startswith("row_filter ")],
        resourceGroup=outcome.resource_group, cacheHit=outcome.cache_hit, state=outcome.state, producer=producer)


def _input(table: str, outcome: QueryOutcome, facts: Facts, names: DatasetNames, producer: str) -> InputDataset:
    namespace, name = names.of(table)
    types = facts.column_types.get(table, {})
    fields = [schema_dataset.SchemaDatasetFacetFields(name=column, type=types.get(column))
              for column in outcome.columns_read.get(table, ())]
    facets: dict[str, DatasetFacet] = {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=producer)}
    return InputDataset(namespace=namespace, name=name, facets=facets)


def _output(job: str, facts: Facts, names: DatasetNames, gateway_namespace: str, producer: str) -> OutputDataset:
    lineage = facts.lineage
    facets: dict[str, DatasetFacet] = {}
    if lineage is not None:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=o.name) for o in lineage.outputs],
            producer=producer)
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={o.name: column_lineage_dataset.Fields(inputFields=[_field(c, "DIRECT", names) for c in o.inputs])
                    for o in lineage.outputs},
            dataset=[_field(c, "INDIRECT", names) for c in lineage.indirect], producer=producer)
    return OutputDataset(namespace=gateway_namespace, name=job, facets=facets)


def _field(column: SourceColumn, kind: str, names: DatasetNames) -> column_lineage_dataset.InputField:
    namespace, name = names.of(column.table)
    return column_lineage_dataset.InputField(
        namespace=namespace, name=name, field=column.column,
        transformations=[column_lineage_dataset.Transformation(type=kind, subtype=column.subtype,
                                                               masking=column.masking)])
