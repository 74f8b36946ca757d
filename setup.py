"""Builds the optional native attribute scanner; everything else is in pyproject.toml.

``optional=True``: where no C compiler exists the install still succeeds and
the genops processor uses its pure-Python reader (same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("relay.genai._scan", ["relay/genai/_scan.c"], optional=True),
                   Extension("relay.genai._usage", ["relay/genai/_usage.c"], optional=True)])
