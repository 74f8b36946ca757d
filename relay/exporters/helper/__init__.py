"""Exporter helpers: senders stacked in front of a transport."""
