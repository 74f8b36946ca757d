"""The ``system`` detector: host and OS facts, named as the collector's system detector names them.

``host.name`` comes from the first of ``hostname_sources`` that answers: ``os`` (the
kernel's hostname), ``dns`` (the fully qualified name: the hosts file or DNS canonical
name, then a reverse lookup), ``cname`` (the canonical name) or ``lookup`` (a reverse
lookup of the host's addresses). If none answers, detection fails and the relay does
not start, as in the collector. Values follow the semantic conventions: ``os.type``
``linux``/``darwin``/``windows``..., ``host.arch`` ``amd64``/``arm64``/``arm32``/``x86``...,
``host.mac`` as upper-case hyphen-separated octets. Facts the platform does not offer
(``host.id`` without a machine id, the CPU facts outside Linux) are left out and logged.
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import struct
import sys
from pathlib import Path

_OS_TYPES = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows",
             "dragonfly": "dragonflybsd", "sunos": "solaris", "aix": "aix", "zos": "z_os"}
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "x86",
           "i486": "x86", "i586": "x86", "i686": "x86", "x86": "x86", "ppc64le": "ppc64", "ppc64": "ppc64",
           "ppc": "ppc32", "s390x": "s390x"}
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/hostid")
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_SIOCGIFADDR = 0x8915


class HostFacts:
    """Where the facts come from; tests give a subclass with fixed answers."""

    root = Path("/")

    def hostname(self) -> str:
        return socket.gethostname()

    def fqdn(self) -> str:
        try:
            return self.cname()
        except OSError:
            return self.reverse_lookup()

    def cname(self) -> str:
        infos = socket.getaddrinfo(self.hostname(), None, flags=socket.AI_CANONNAME)
        name = infos[0][3].rstrip(".") if infos else ""
        if not name:
            raise OSError("no canonical name")
        return name

    def reverse_lookup(self) -> str:
        error: Exception = OSError("no address")
        for info in socket.getaddrinfo(self.hostname(), None):
            try:
                return socket.gethostbyaddr(info[4][0])[0].rstrip(".")
            except OSError as failed:
                error = failed
        raise error

    def os_type(self) -> str:
        for prefix, name in _OS_TYPES.items():
            if sys.platform.startswith(prefix):
                return name
        return sys.platform.rstrip("0123456789")  # freebsd14 -> freebsd, openbsd7 -> openbsd

    def host_arch(self) -> str:
        machine = platform.machine().lower()
        if machine.startswith("armv"):
            return "arm32"
        return _ARCHES.get(machine, machine)

    def host_id(self) -> str | None:
        for name in _MACHINE_ID_FILES:
            text = self._read(name)
            if text:
                return text.strip()
        return None

    def os_release(self) -> dict[str, str]:
        text = self._read("etc/os-release") or self._read("usr/lib/os-release") or ""
        out = {}
        for line in text.splitlines():
            key, equals, value = line.partition("=")
            if equals:
                out[key.strip()] = value.strip().strip("\"'")
        return out

    def os_description(self) -> str:
        uname = platform.uname()
        uname_text = f"{uname.system} {uname.node} {uname.release} {uname.version} {uname.machine}"
        pretty = self.os_release().get("PRETTY_NAME")
        return f"{pretty} ({uname_text})" if pretty else uname_text

    def cpu(self) -> dict[str, str]:
        """The first processor's block of /proc/cpuinfo (empty elsewhere)."""
        out: dict[str, str] = {}
        for line in (self._read("proc/cpuinfo") or "").splitlines():
            if not line.strip():
                if out:
                    break
                continue
            key, colon, value = line.partition(":")
            if colon:
                out[key.strip()] = value.strip()
        return out

    def interfaces(self) -> list[str]:
        """Network interfaces that are up and not loopback (Linux /sys/class/net)."""
        out = []
        base = self.root / "sys/class/net"
        for path in sorted(base.iterdir()) if base.is_dir() else ():
            try:
                flags = int((path / "flags").read_text().strip(), 16)
            except (OSError, ValueError):
                continue
            if flags & _IFF_UP and not flags & _IFF_LOOPBACK:
                out.append(path.name)
        return out

    def macs(self) -> list[str]:
        out = []
        for name in self.interfaces():
            text = self._read(f"sys/class/net/{name}/address") or ""
            mac = text.strip().upper().replace(":", "-")
            if mac and mac.strip("0-"):
                out.append(mac)
        return out

    def ips(self) -> list[str]:
        out = []
        wanted = set(self.interfaces())
        for name in sorted(wanted):
            address = _ipv4_of(name)
            if address and not ipaddress.ip_address(address).is_loopback:
                out.append(address)
        for line in (self._read("proc/net/if_inet6") or "").splitlines():
            fields = line.split()
            if len(fields) == 6 and fields[5] in wanted:
                address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                if not address.is_loopback:
                    out.append(str(address))
        return out

    def _read(self, name: str) -> str | None:
        try:
            return (self.root / name.lstrip("/")).read_text()
        except (OSError, UnicodeDecodeError):
            return None


def _ipv4_of(interface: str) -> str | None:
    try:
        import fcntl  # POSIX only; elsewhere host.ip has IPv6 addresses at most
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
    except (OSError, ImportError):
        return None
    return socket.inet_ntoa(packed[20:24])


class DetectionError(Exception):
    pass


_SOURCES = {"os": "hostname", "dns": "fqdn", "cname": "cname", "lookup": "reverse_lookup"}


def detect(facts: HostFacts, sources: list[str], enabled: list[str], log) -> dict:
    """The enabled attributes, in the collector's order; blocking (DNS), so run off the event loop."""
    failures = []
    hostname = None
    for source in sources:
        try:
            hostname = getattr(facts, _SOURCES[source])()
        except OSError as error:
            failures.append(f"{source}: {error}")
            continue
        if hostname:
            break
        failures.append(f"{source}: empty")
    if not hostname:
        raise DetectionError("all hostname sources failed to get hostname (" + "; ".join(failures) + ")")
    release = facts.os_release() if {"os.name", "os.version", "os.build.id"} & set(enabled) else {}
    cpu = facts.cpu() if any(name.startswith("host.cpu.") for name in enabled) else {}
    getters = {
        "host.name": lambda: hostname,
        "os.type": facts.os_type,
        "host.id": facts.host_id,
        "host.arch": facts.host_arch,
        "host.ip": facts.ips,
        "host.mac": facts.macs,
        "host.interface": facts.interfaces,
        "os.description": facts.os_description,
        "os.name": lambda: release.get("NAME"),
        "os.version": lambda: release.get("VERSION_ID"),
        "os.build.id": lambda: release.get("BUILD_ID"),
        "host.cpu.vendor.id": lambda: cpu.get("vendor_id"),
        "host.cpu.family": lambda: cpu.get("cpu family"),
        "host.cpu.model.id": lambda: cpu.get("model"),
        "host.cpu.model.name": lambda: cpu.get("model name"),
        "host.cpu.stepping": lambda: cpu.get("stepping"),
        "host.cpu.cache.l2.size": lambda: _kilobytes(cpu.get("cache size")),
    }
    out = {}
    for name in enabled:
        value = getters[name]()
        if value is None or value == "" or value == []:
            log.warning("system detector: attribute not available on this host", fields={"attribute": name})
            continue
        out[name] = value
    return out


def _kilobytes(text: str | None) -> int | None:
    number = (text or "").split(" ")[0]
    return int(number) if number.isdigit() else None
