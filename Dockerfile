# genops-relay: OTLP in, GenOps attribution and cost, OTLP out.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relay

WORKDIR /opt/genops-relay
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY setup.py ./
# gcc only for the build of the optional native scanner, then removed again.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* /root/.cache

USER 10001

# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 8889 the cost counters (prometheus exporter), 8888 the relay's own metrics, 13133 health_check.
EXPOSE 4317 4318 8889 8888 13133

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:13133/', timeout=2).status == 200 else 1)"

# Without --config the built-in default configuration runs; mount a file and
# pass `run --config /etc/genops-relay/relay.yaml` to use your own.
ENTRYPOINT ["genops-relay"]
CMD ["run"]
