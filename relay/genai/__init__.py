"""The GenAI vocabulary, below every component: which attribute names carry a call's model,
tokens, cost and provider in each instrumentation dialect, how their numbers are read, and
the wire scanner that reads them from a request's bytes.

The genops processor, the genops_metrics connector and the ledger all read spans through
this package, so a dialect added here is understood by each of them.
"""
