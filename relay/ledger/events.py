"""The names of the events the ledger and the budget processor log and send to webhooks."""

BUDGET_EVENT = "openrouter_cost_threshold_exceeded"
FAILOVER_EVENT = "openrouter_provider_failover"
