"""Workload management: resource groups, priority queues, time and row caps (DESIGN: `policies/workload.yaml`).

    model.py        resource groups and selectors, as immutable values
    load.py         policies/workload.yaml -> WorkloadPolicy (file:line errors); store.py hot-reloads it
    select.py       which group a query belongs to (first matching selector)
    slots.py        the queue and the slot counts of one process (priority first, FIFO within a group)
    redis_slots.py  the same, shared by every replica through Redis (atomic Lua scripts, leased slots)
    budget.py       the seam where the cost capability can demote or block a query
    manager.py      the `admit` stage the pipeline calls: select, budget, scan estimate, queue, time caps, kill
"""
