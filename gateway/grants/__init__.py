"""Just-in-time access: requests for a bounded grant on one table, approved by the approvers policy names.

    model.py     AccessRequest and the events it is made of (pure)
    tables.py    the events table and the requests view in the audit store's database
    snapshot.py  every request, folded from the events, in memory; the active grants per identity (pure)
    service.py   AccessRequests: request / list / approve / deny / revoke, and the poller keeping the
                 snapshot fresh on every replica
    settings.py  `access_requests:` in gateway.yaml
    cli.py       `gateway access ...` over the HTTP API
"""
