"""Builds the optional native wire readers (attribute scanner, pricing path, point walker)
and puts the recorded payloads into the package; everything else is in pyproject.toml.

``optional=True``: where no C compiler exists the install still succeeds and each caller
uses its pure-Python path (same results, slower).

``proto_fixtures/`` stays at the top of the source tree, where the tests and its README
expect it; a built package carries its recorded requests as ``relay/_fixtures/``, so that
``genops-relay bench`` runs from an installed wheel and in the Docker image.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

FIXTURES = Path(__file__).resolve().parent / "proto_fixtures"


class build_py_with_fixtures(build_py):
    def run(self):
        super().run()
        if not FIXTURES.is_dir():  # an sdist built without them: the bench will say so
            return
        target = Path(self.build_lib) / "relay" / "_fixtures"
        for source in FIXTURES.rglob("*.binpb"):
            destination = target / source.relative_to(FIXTURES)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


def native(name: str, source: str) -> Extension:
    return Extension(name, [source], include_dirs=["relay"], depends=["relay/wire.h"], optional=True)


setup(ext_modules=[native("relay.genai._scan", "relay/genai/_scan.c"),
                   native("relay.genai._usage", "relay/genai/_usage.c"),
                   native("relay._points", "relay/_points.c")],
      cmdclass={"build_py": build_py_with_fixtures})
