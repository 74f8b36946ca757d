"""The relay's data directory: where the built-in configuration keeps the cost ledger.

``--data-dir`` if given, else ``$GENOPS_RELAY_DATA``, else the platform's user data
directory for "genops-relay" (``~/.local/share/genops-relay`` on Linux). The Docker image
sets ``GENOPS_RELAY_DATA=/var/lib/genops-relay``. ``run`` and ``report`` find it the same
way, so a report with no arguments reads the ledger the relay with no config writes.

A config reaches it as ``${env:GENOPS_RELAY_DATA}``: the CLI expands configs with that
variable set to the directory found, whichever way it was found. Finding it creates
nothing; the component that writes there creates what it needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV = "GENOPS_RELAY_DATA"
APP = "genops-relay"


def data_dir(flag: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser()
    if env.get(ENV):
        return Path(env[ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_env(directory: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a config is expanded in: the process's, with ``GENOPS_RELAY_DATA`` the data directory."""
    return {**(os.environ if env is None else env), ENV: str(directory)}
