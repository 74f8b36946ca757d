"""Attribute actions and filters, the collector's ``attraction`` and ``filterspec``, and what they
do to one value: shared by the attributes and resource processors and the Jaeger translation."""
