"""The audit trail: one tamper-evident record for every attempt, never lost, queryable by auditors.

    record.py      AuditRecord: every field of one attempt (never a secret); literal redaction
    chain.py       canonical encoding, the per-instance hash chain, checkpoints
    journal.py     the local append-only journal (the spool): written before a result is final
    stores/        where records live: SQLite (embedded default) or PostgreSQL (asyncpg), append-only
    trail.py       AuditTrail: seals and journals each record on the query path, stores batches off it
    verify.py      walks the chains and names every modified, deleted, inserted or reordered record
    search.py      filters for /api/audit and `gateway audit search`

Order of one record: the pipeline finishes an attempt -> `AuditTrail.append` seals it into the chain and
writes it to the journal (a write(2), so it survives SIGKILL; before the final response is built) -> the
trail's writer task stores it in batches and acknowledges the journal -> periodic checkpoints anchor the
chain's tail. A store outage leaves records in the journal (fsync'd), replayed in order when it is back.
"""
