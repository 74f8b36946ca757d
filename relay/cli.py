"""genops-relay: run | validate | price | report | bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from relay.config.load import load, load_file
from relay.datadir import config_env, data_dir
from relay.defaults import DEFAULT_CONFIG
from relay.errors import ConfigError
from relay.pipeline.graph import describe
from relay.pipeline.registry import default_registry
from relay.telemetry import SelfMetrics, setup_logging

log = logging.getLogger("relay.service")


def _load(path: str | None, data: str | None = None):
    # Every config, the built-in one above all, may name the data directory as ${env:GENOPS_RELAY_DATA}.
    registry, env = default_registry(), config_env(data_dir(data))
    return load_file(path, registry, env) if path else load(DEFAULT_CONFIG, registry, env)


def cmd_validate(args) -> int:
    try:
        config = _load(args.config)
    except ConfigError as error:
        where = f" in {args.config}" if args.config else ""
        print(f"invalid configuration{where} ({len(error.problems)} problem"
              f"{'s' if len(error.problems) != 1 else ''}):", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if not args.config:
        print("# no --config given: this is the built-in default configuration")
        print(DEFAULT_CONFIG)
    print(describe(config))
    return 0


def cmd_run(args) -> int:
    setup_logging("info")
    try:
        config = _load(args.config, args.data_dir)
    except ConfigError as error:
        for problem in error.problems:
            log.error("invalid configuration", extra={"fields": {"file": args.config or "(built-in)",
                                                                 "problem": str(problem)}})
        return 1
    setup_logging(config.telemetry.logs.level)
    if not args.config:
        log.info("no --config given: running the built-in default configuration",
                 extra={"fields": {"data_dir": str(data_dir(args.data_dir))}})
    try:
        asyncio.run(_run(config, args.shutdown_timeout))
    except (OSError, ConfigError) as error:
        # What only a start can find: a port in use, an unusable directory, a certificate.
        log.error("relay failed to start", extra={"fields": {"error": str(error)}})
        return 1
    return 0


async def _run(config, shutdown_timeout: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    from relay.service import serve

    await serve(config, SelfMetrics(), stop, shutdown_timeout)


def cmd_bench(args) -> int:
    from relay.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    # The module docstring is the --help text as is: it stays plain, without reStructuredText markup.
    parser = argparse.ArgumentParser(prog="genops-relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the relay")
    run.add_argument("--config", help="collector-format YAML (default: the built-in config)")
    run.add_argument("--data-dir", help="where the built-in config keeps the cost ledger (default: "
                     "$GENOPS_RELAY_DATA, else the platform's user data directory); ${env:GENOPS_RELAY_DATA} "
                     "in a config")
    run.add_argument("--shutdown-timeout", type=float, default=4.0,
                     help="seconds allowed for a graceful shutdown (default 4)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check a config and print its pipeline graph")
    validate.add_argument("--config", help="collector-format YAML (default: print the built-in config)")
    validate.set_defaults(func=cmd_validate)

    price = sub.add_parser("price", help="what an LLM call costs and where the price came from")
    from relay import pricing_cli

    pricing_cli.add_arguments(price)
    price.set_defaults(func=pricing_cli.main)

    report = sub.add_parser("report", help="the cost report by team, project, model, provider or customer")
    from relay import report_cli

    report_cli.add_arguments(report)
    report.set_defaults(func=report_cli.main)

    bench = sub.add_parser("bench", help="measure throughput against a same-run ceiling")
    from relay.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
