# genops-relay: OTLP in, GenOps attribution and cost, OTLP out.
# Runs as in deploy/kubernetes/: UID/GID 10001, a read-only root file system, the config
# at /etc/genops-relay/relay.yaml and everything it writes under /var/lib/genops-relay.
FROM python:3.11-slim

# Nothing is written next to the code at run time (the root file system is read-only in
# Kubernetes), and log lines leave the process as they are written. The data directory
# (where the built-in config keeps the cost ledger, and genops-relay report finds it) is
# the state volume below.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GENOPS_RELAY_DATA=/var/lib/genops-relay

RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin relay

WORKDIR /opt/genops-relay
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY setup.py ./
# The recorded payloads, so that the image can run genops-relay bench (setup.py packs them).
COPY proto_fixtures ./proto_fixtures
# gcc only for the build of the optional native scanner, then removed again.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* /root/.cache

# The config path the Kubernetes manifests mount their ConfigMap over. Until something is
# mounted there, it holds the built-in default configuration.
RUN mkdir -p /etc/genops-relay \
    && python -c "from relay.defaults import DEFAULT_CONFIG; open('/etc/genops-relay/relay.yaml', 'w').write(DEFAULT_CONFIG)"

# The export queues (file_storage) and the cost ledger: the relay's only state. Owned by the
# relay's user before VOLUME, since changes after it would be discarded.
RUN mkdir -p /var/lib/genops-relay \
    && chown 10001:10001 /var/lib/genops-relay && chmod 0700 /var/lib/genops-relay
VOLUME /var/lib/genops-relay

USER 10001:10001

# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 8889 the cost counters (prometheus exporter), 8888 the relay's own metrics, 13133 health_check.
EXPOSE 4317 4318 8889 8888 13133

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:13133/', timeout=2).status == 200 else 1)"

# Mount your own file at /etc/genops-relay/relay.yaml (or pass another --config).
ENTRYPOINT ["genops-relay"]
CMD ["run", "--config", "/etc/genops-relay/relay.yaml"]
