"""The cost ledger: LLM spend per hour (or day) by team, project, model, provider and customer,
kept in SQLite on the relay's own disk, with the budgets evaluated against it and the reports
read from it. Time is the spans' own: a call's cost belongs to the period it ended in.
"""
