"""The ``resourcedetection`` processor: attributes of this host and process, merged into every resource.

Detection runs once, at start, as in the collector: the detectors run in the order
listed and, where two give the same key, the first wins. Then every resource of every
request (traces, metrics, logs, profiles) gets the detected attributes: with ``override: true``
(the default) they replace the resource's own values, with ``false`` they only fill
keys the resource lacks.

Here only ``env`` (``OTEL_RESOURCE_ATTRIBUTES``, see ``env``) and ``system`` (hostname
and OS facts, see ``system``) detect anything. The collector's cloud, container and
Kubernetes detectors (``gcp``, ``ec2``, ``docker``, ``k8snode``, ...) need a metadata
service or a daemon; they are accepted, so that a collector config listing them loads,
and each is logged once at start as having no effect. A detector that fails (a malformed
``OTEL_RESOURCE_ATTRIBUTES``, no hostname from any source, detection past ``timeout``)
stops the relay from starting, as it stops the collector.
"""

from __future__ import annotations

import asyncio
import os
import threading

from relay import attrs
from relay.component import Settings
from relay.errors import RelayError
from relay.processors.helper import FunctionProcessor
from relay.processors.resourcedetection import env, system
from relay.processors.resourcedetection.config import INERT_DETECTORS, AttributeConfig, Config, SystemConfig
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

TYPE = "resourcedetection"
# The collector's newer name for the same component.
ALIASES = ("resource_detection",)
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
# hostname_sources [os]: the kernel's hostname, no DNS lookup.
EXAMPLE = {"detectors": ["env", "system"], "system": {"hostname_sources": ["os"]}}

__all__ = ["TYPE", "SIGNALS", "EXAMPLE", "Config", "SystemConfig", "AttributeConfig", "create",
           "ResourceDetection", "merge"]


class ResourceDetection(FunctionProcessor):
    def __init__(self, id_, config: Config, next_consumer, environ=None, facts: system.HostFacts | None = None):
        super().__init__(id_, self._process, next_consumer, mutates=True)
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.facts = facts or system.HostFacts()
        self.log = component_logger(id_)
        self.detected: dict = {}

    async def start(self) -> None:
        for name in self.config.inert():
            self.log.info(f"accepted, has no effect here: detector {name} ({INERT_DETECTORS[name]})")
        detected: dict = {}
        for name in self.config.local():
            try:
                found = await self._detect(name)
            except (env.FormatError, system.DetectionError) as error:
                raise RelayError(f"{self.id}: detector {name} failed: {error}") from None
            for key, value in found.items():
                detected.setdefault(key, value)  # the first detector listed wins
        if self.config.attributes is not None:
            keep = set(self.config.attributes)
            detected = {key: value for key, value in detected.items() if key in keep}
        self.detected = detected
        self.log.info("resource detected", fields={"attributes": sorted(detected)})

    async def _detect(self, name: str) -> dict:
        if name == "env":
            return env.detect(self.environ)
        cfg = self.config.system
        return await _in_thread(lambda: system.detect(self.facts, cfg.sources(), cfg.enabled(), self.log),
                                self.config.timeout, f"{self.id}: detector system")

    def _process(self, request):
        if self.detected:
            for entry in signal_of(request).resources(request):
                merge(entry.resource.attributes, self.detected, self.config.override)
        return request


def merge(kvs, detected: dict, override: bool) -> None:
    for key, value in detected.items():
        if override or attrs.find(kvs, key) is None:
            attrs.put(kvs, key, value)


async def _in_thread(work, timeout: float, what: str):
    """``work()`` on a daemon thread, awaited for at most ``timeout`` seconds. A daemon thread, not
    the loop's executor: a resolver call that hangs past the timeout must not hold up exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            outcome = (work(), None)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop has closed since the timeout: nobody is waiting
            pass

    threading.Thread(target=run, name=what, daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise RelayError(f"{what} took longer than the timeout ({timeout:g}s)") from None


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # timed out and cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def create(settings: Settings, config: Config, next_consumer) -> ResourceDetection:
    return ResourceDetection(settings.id, config, next_consumer)
