"""The five instrumentation libraries under test, and where their virtualenvs live."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# Gitignored; one venv per library, kept while its requirements file is unchanged.
VENVS = ROOT / ".venvs"
BUILD_COMMAND = "python3 -m tests.llm_libraries.venvs"


@dataclass(frozen=True)
class Library:
    name: str       # the driver's and the fixture's name
    package: str    # the PyPI distribution that instruments openai
    team: str       # genops.team given through OTEL_RESOURCE_ATTRIBUTES

    @property
    def requirements(self) -> Path:
        return HERE / "requirements" / f"{self.name}.txt"

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def stamp(self) -> Path:
        """Written last by a finished build; holds the requirements' digest."""
        return self.venv / "requirements.sha256"

    def digest(self) -> str:
        # A venv is bound to the interpreter that made it, so a Python upgrade rebuilds it too.
        text = self.requirements.read_bytes() + f"{sys.version_info[:3]}".encode()
        return hashlib.sha256(text).hexdigest()

    def ready(self) -> bool:
        return self.python.exists() and self.stamp.exists() and self.stamp.read_text().strip() == self.digest()


LIBRARIES = (
    Library("otel-openai-v2", "opentelemetry-instrumentation-openai-v2", "team-otel"),
    Library("openllmetry", "opentelemetry-instrumentation-openai", "team-traceloop"),
    Library("openinference", "openinference-instrumentation-openai", "team-arize"),
    Library("openlit", "openlit", "team-openlit"),
    Library("logfire", "logfire", "team-logfire"),
)
BY_NAME = {library.name: library for library in LIBRARIES}


def driver_env(library: Library, traces_endpoint: str) -> dict[str, str]:
    """The environment a driver runs in: OTLP/HTTP to ``traces_endpoint``, nothing else leaves 127.0.0.1."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OTEL_", "OPENAI_", "LOGFIRE_", "OPENLIT_", "TRACELOOP_"))}
    env.update({
        "OTEL_RESOURCE_ATTRIBUTES": f"genops.team={library.team},service.name={library.name}",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        # Usage reporting off (traceloop-sdk's switch, in case an instrumentor picks it up);
        # openlit's price download and Logfire's own backend are turned off in drive.py.
        "TRACELOOP_TELEMETRY": "false",
        "LOGFIRE_SEND_TO_LOGFIRE": "false",
        "LOGFIRE_CONSOLE": "false",
        "OPENAI_API_KEY": "sk-or-standin",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env
