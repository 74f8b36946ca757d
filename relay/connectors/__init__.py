"""Connectors: components that end one pipeline and start another."""
