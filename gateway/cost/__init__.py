"""Cost metering, the cost ledger, budgets and chargeback (`policies/cost.yaml`).

    model     the cost policy (rates, cost-center mapping, budgets) and the ledger's values (Charge)
    load      policies/cost.yaml -> CostPolicy, every mistake as file:line
    store     the cost policy in force, hot-reloaded
    meter     a finished query + its backend's figures -> Charge (pure)
    ledger    the billing tables in the audit store (schema, rows, the gateway.billing catalog view)
    budgets   spend counters per cost center and period; the workload BudgetHook; alerts on crossings
    alerts    alert delivery: log, metric, webhook with retries
    report    ledger rows -> chargeback totals
    cli       `gateway chargeback`
"""
