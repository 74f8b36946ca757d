"""genops-relay: an OTLP relay with GenOps cost attribution."""
