"""Builds the optional native wire readers (attribute scanner, pricing path, point walker);
everything else is in pyproject.toml.

``optional=True``: where no C compiler exists the install still succeeds and each caller
uses its pure-Python path (same results, slower).
"""

from setuptools import Extension, setup


def native(name: str, source: str) -> Extension:
    return Extension(name, [source], include_dirs=["relay"], depends=["relay/wire.h"], optional=True)


setup(ext_modules=[native("relay.genai._scan", "relay/genai/_scan.c"),
                   native("relay.genai._usage", "relay/genai/_usage.c"),
                   native("relay._points", "relay/_points.c")])
