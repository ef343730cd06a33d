"""OpenLineage run events per executed statement (docs/lineage.md): settings.py (the `lineage:` section),
naming.py (dataset names per the OpenLineage naming spec), columns.py (column-level lineage from sqlglot),
facets.py (the events, pure), emitter.py (the bounded queue and the background sender)."""
