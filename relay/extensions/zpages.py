"""The ``zpages`` extension: small live pages about the running relay, as the collector's.

Pages (anything else is a 404):

- ``/debug/servicez``: version, start time and uptime, Python version, pid,
  the pipelines and extensions at a glance, links to the other pages;
- ``/debug/pipelinez``: every pipeline's receivers, processors and exporters,
  each with its own ``otelcol_*`` self-metrics (the samples whose ``receiver``,
  ``processor``, ``exporter`` or ``connector`` label names it, less those of
  another signal than the pipeline's: a name carrying another signal's item,
  such as ``_log_records`` in a traces pipeline, or a ``signal`` label naming
  another signal) and, for an exporter with a sending queue, the queue's size
  and capacity. A component in several pipelines shows the same counters in
  each: the self-metrics are per component, not per pipeline;
- ``/debug/extensionz``: the enabled extensions;
- ``/debug/featurez``: the feature gates; the relay has none, so the list is empty.

Each page is HTML unless JSON is asked for: ``?format=json`` (or ``?format=html``
to force HTML), or, without ``format``, an ``Accept`` header naming
``application/json`` and not ``text/html`` (so ``curl -H 'Accept: application/json'``
gets JSON and a browser gets HTML). Another ``format`` is a 400.

Everything shown comes from the loaded config and the self-metrics registry;
component settings are not shown, since they may hold credentials (headers).
"""

from __future__ import annotations

import datetime
import html
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from relay.component import Settings
from relay.errors import Problem
from relay.httpserver import HttpListener
from relay.net.endpoints import endpoint_problem
from relay.net.http_client import relay_version
from relay.signals import Signal
from relay.telemetry import component_logger

TYPE = "zpages"
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:55679"}

PAGES = {
    "/debug/servicez": "Service",
    "/debug/pipelinez": "Pipelines",
    "/debug/extensionz": "Extensions",
    "/debug/featurez": "Feature gates",
}

# The self-metrics label naming a component of each kind (the collector's convention).
_LABEL = {"receiver": "receiver", "processor": "processor", "exporter": "exporter", "connector": "connector"}
_QUEUE_GAUGES = {"otelcol_exporter_queue_size": "size", "otelcol_exporter_queue_capacity": "capacity"}


@dataclass
class Config:
    endpoint: str = "localhost:55679"

    def validate(self) -> list[Problem]:
        if message := endpoint_problem(self.endpoint):
            return [Problem(("endpoint",), message)]
        return []


class ZPages:
    def __init__(self, id_, config: Config, host=None):
        self.id = id_
        self.host = host
        self.log = component_logger(id_)
        self._started = (datetime.datetime.now(datetime.timezone.utc), time.monotonic())
        app = web.Application()
        for path in PAGES:
            app.router.add_get(path, self._handle)
        self.listener = HttpListener(app, config.endpoint)

    @property
    def port(self) -> int | None:
        return self.listener.port

    async def start(self) -> None:
        self._started = (datetime.datetime.now(datetime.timezone.utc), time.monotonic())
        await self.listener.start()
        self.log.info("zpages listening", fields={"port": self.listener.port, "pages": list(PAGES)})

    async def shutdown(self) -> None:
        await self.listener.shutdown()

    async def _handle(self, request: web.Request) -> web.Response:
        wants_json = _wants_json(request)
        page = request.path
        data = {
            "/debug/servicez": self.servicez,
            "/debug/pipelinez": self.pipelinez,
            "/debug/extensionz": self.extensionz,
            "/debug/featurez": self.featurez,
        }[page]()
        if wants_json:
            return web.json_response(data)
        body = _RENDER[page](data)
        return web.Response(text=_document(PAGES[page], body), content_type="text/html", charset="utf-8")

    # --- the data of each page; the HTML is rendered from exactly this -----------------------------------

    def servicez(self) -> dict[str, Any]:
        since, started = self._started
        return {
            "version": relay_version(),
            "start_time": since.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "uptime_seconds": round(time.monotonic() - started, 3),
            "python": f"{platform.python_version()} ({platform.python_implementation()})",
            "pid": os.getpid(),
            "pipelines": [{"id": p["id"], "signal": p["signal"],
                           **{role: [c["id"] for c in p[role]] for role in ("receivers", "processors", "exporters")}}
                          for p in self._pipelines(with_metrics=False)],
            "extensions": [e["id"] for e in self.extensionz()["extensions"]],
            "pages": list(PAGES),
        }

    def pipelinez(self) -> dict[str, Any]:
        return {"pipelines": self._pipelines(with_metrics=True)}

    def extensionz(self) -> dict[str, Any]:
        config = getattr(self.host, "config", None)
        ids = list(config.extensions) if config is not None else []
        return {"extensions": [{"id": str(id_), "type": id_.type} for id_ in ids]}

    def featurez(self) -> dict[str, Any]:
        return {"gates": []}

    def _pipelines(self, with_metrics: bool) -> list[dict[str, Any]]:
        config = getattr(self.host, "config", None)
        if config is None:
            return []
        samples = _component_samples(getattr(self.host, "telemetry", None)) if with_metrics else {}
        connectors = config.components.get("connectors", {})
        out = []
        for pipeline in config.pipelines:
            entry: dict[str, Any] = {"id": pipeline.id, "signal": pipeline.signal.value}
            for role, kind in (("receivers", "receiver"), ("processors", "processor"), ("exporters", "exporter")):
                entry[role] = []
                for id_ in getattr(pipeline, role):
                    # The loader reads a configured connector id in receivers/exporters as that connector.
                    actual = "connector" if role != "processors" and id_ in connectors else kind
                    component: dict[str, Any] = {"id": str(id_), "type": id_.type, "kind": actual}
                    if with_metrics:
                        metrics, queue = samples.get((actual, str(id_)), ([], {}))
                        component["metrics"] = [m for m in metrics if _of_signal(m, pipeline.signal)]
                        if queue:
                            component["queue"] = queue
                    entry[role].append(component)
            out.append(entry)
        return out


def _component_samples(telemetry) -> dict[tuple[str, str], tuple[list[dict], dict[str, float]]]:
    """(kind, id) -> (samples naming that component, its queue gauges), read once per page."""
    registry = getattr(telemetry, "registry", None)
    found: dict[tuple[str, str], tuple[list[dict], dict[str, float]]] = {}
    if registry is None:
        return found
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # prometheus_client's creation timestamps: not a reading
            for kind, label in _LABEL.items():
                name = sample.labels.get(label)
                if name is None:
                    continue
                metrics, queue = found.setdefault((kind, name), ([], {}))
                if sample.name in _QUEUE_GAUGES and kind == "exporter":
                    queue[_QUEUE_GAUGES[sample.name]] = sample.value
                else:
                    metrics.append({"name": sample.name,
                                    "labels": {k: v for k, v in sample.labels.items() if k != label},
                                    "value": sample.value})
    for metrics, _ in found.values():
        metrics.sort(key=lambda m: (m["name"], sorted(m["labels"].items())))
    return found


def _of_signal(metric: dict, signal: Signal) -> bool:
    """Whether a sample may concern ``signal``: not when its name carries another signal's
    item (``..._log_records``) or its ``signal`` label names another signal."""
    name = metric["name"]
    if any(f"_{other.item}" in name for other in Signal if other is not signal):
        return False
    return metric["labels"].get("signal", signal.value) == signal.value


def _wants_json(request: web.Request) -> bool:
    wanted = request.query.get("format")
    if wanted is not None:
        if wanted not in ("json", "html"):
            raise web.HTTPBadRequest(text=f'format must be "json" or "html", not "{wanted}"')
        return wanted == "json"
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


# --- HTML ---------------------------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _document(title: str, body: str) -> str:
    nav = " | ".join(f'<a href="{_e(path)}">{_e(name)}</a>' for path, name in PAGES.items())
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>genops-relay zPages: {_e(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin:.5em 0}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}"
            "code{font-size:90%}</style></head>\n"
            f"<body><nav>{nav}</nav>\n<h1>{_e(title)}</h1>\n{body}\n</body></html>\n")


def _list(items: list) -> str:
    return ", ".join(_e(item) for item in items) or "<em>none</em>"


def _render_servicez(data: dict) -> str:
    rows = [("Version", data["version"]), ("Started", data["start_time"]),
            ("Uptime", f'{data["uptime_seconds"]:.0f} s'), ("Python", data["python"]), ("PID", data["pid"])]
    info = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    pipelines = "".join(
        f'<tr><td>{_e(p["id"])}</td><td>{_list(p["receivers"])}</td><td>{_list(p["processors"])}</td>'
        f'<td>{_list(p["exporters"])}</td></tr>' for p in data["pipelines"])
    return (f"<table>{info}</table>\n<h2>Pipelines</h2>\n"
            "<table><tr><th>Pipeline</th><th>Receivers</th><th>Processors</th><th>Exporters</th></tr>"
            f"{pipelines}</table>\n<h2>Extensions</h2>\n<p>{_list(data['extensions'])}</p>")


def _render_metrics(component: dict) -> str:
    lines = []
    for metric in component["metrics"]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric["labels"].items()))
        lines.append(f'<code>{_e(metric["name"])}{_e("{" + labels + "}") if labels else ""}</code> '
                     f'{_e(_number(metric["value"]))}')
    queue = component.get("queue")
    if queue:
        lines.append("queue: " + _e(" / ".join(_number(queue[k]) for k in ("size", "capacity") if k in queue))
                     + (" (size / capacity)" if len(queue) == 2 else ""))
    return "<br>".join(lines) or "<em>no samples yet</em>"


def _render_pipelinez(data: dict) -> str:
    parts = []
    for pipeline in data["pipelines"]:
        rows = "".join(
            f'<tr><td>{_e(role[:-1])}</td><td>{_e(c["id"])}</td><td>{_e(c["kind"])}</td>'
            f"<td>{_render_metrics(c)}</td></tr>"
            for role in ("receivers", "processors", "exporters") for c in pipeline[role])
        parts.append(f'<h2>{_e(pipeline["id"])}</h2>\n'
                     "<table><tr><th>Role</th><th>Component</th><th>Kind</th><th>Self-metrics</th></tr>"
                     f"{rows}</table>")
    return "\n".join(parts) or "<p><em>No pipelines.</em></p>"


def _render_extensionz(data: dict) -> str:
    if not data["extensions"]:
        return "<p><em>No extensions enabled.</em></p>"
    rows = "".join(f'<tr><td>{_e(e["id"])}</td><td>{_e(e["type"])}</td></tr>' for e in data["extensions"])
    return f"<table><tr><th>Extension</th><th>Type</th></tr>{rows}</table>"


def _render_featurez(data: dict) -> str:
    if not data["gates"]:
        return "<p><em>No feature gates: this relay has none.</em></p>"
    return "<ul>" + "".join(f"<li>{_e(g)}</li>" for g in data["gates"]) + "</ul>"


_RENDER = {
    "/debug/servicez": _render_servicez,
    "/debug/pipelinez": _render_pipelinez,
    "/debug/extensionz": _render_extensionz,
    "/debug/featurez": _render_featurez,
}


def create(settings: Settings, config: Config) -> ZPages:
    id_, host = settings.id, settings.host
    return ZPages(id_, config, host)
