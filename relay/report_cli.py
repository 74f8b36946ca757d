"""``genops-relay report``: the cost report, read from the ledger file (nothing else need run).

The ledger is found from ``--ledger`` (a file or its directory), else from the
``genops_ledger`` extension of ``--config``, else where the built-in default
config keeps it: ``ledger/ledger.sqlite`` in the data directory (``--data-dir``,
else ``$GENOPS_RELAY_DATA``, else the platform's user data directory), found the
way ``run`` finds it. Without ``--from``/``--to`` it covers this month so far. It
reads what the relay has flushed (at most ``flush_interval`` behind);
``GET /api/v1/cost/report`` on a running relay includes the rest. Exit status:
0 printed, 1 bad arguments or no ledger.
"""

from __future__ import annotations

import sys
from pathlib import Path

from relay.errors import ConfigError
from relay.ledger.query import HOW_TO_ENABLE


def add_arguments(parser) -> None:
    parser.add_argument("--from", dest="start", default="",
                        help="first day (YYYY-MM-DD) or ISO 8601 time (default: the first of --to's month)")
    parser.add_argument("--to", dest="end", default="",
                        help="last day, inclusive (YYYY-MM-DD) or ISO time (default: today)")
    parser.add_argument("--by", choices=("team", "project", "model", "provider", "customer"),
                        help="break the report down by this dimension (default: team)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--config", help="relay config whose genops_ledger extension holds the ledger")
    parser.add_argument("--ledger", help="the ledger file, or the directory holding ledger.sqlite")
    parser.add_argument("--data-dir", help="the data directory the relay ran with (default: $GENOPS_RELAY_DATA, "
                                           "else the platform's user data directory)")
    parser.add_argument("--timezone", help="zone for --from/--to dates (default: the ledger's, else UTC)")


class _NoLedger(Exception):
    """No ledger where the arguments point; the message says why and how to get one."""


def _locate(args) -> tuple[Path, str | None]:
    """The ledger file and the zone its configuration names (None: the one recorded in the file)."""
    from relay.datadir import config_env, data_dir
    from relay.extensions.genops_ledger import ledger_path

    if args.ledger:
        path = Path(args.ledger)
        return (path / "ledger.sqlite" if path.is_dir() else path), None
    directory = data_dir(args.data_dir)
    if args.config:
        from relay.config.load import load_file
        from relay.pipeline.registry import default_registry

        config = load_file(args.config, default_registry(), config_env(directory))
        ledgers = [c for id_, c in config.components["extensions"].items() if id_.type == "genops_ledger"]
        if not ledgers:
            raise _NoLedger(f"{args.config} configures no cost ledger: {HOW_TO_ENABLE}")
        return ledger_path(ledgers[0]), ledgers[0].timezone
    path = directory / "ledger" / "ledger.sqlite"
    if not path.exists():
        raise _NoLedger(f"no cost ledger at {path}: the built-in config keeps one there once it has run "
                        f"(genops-relay run, with the same --data-dir or $GENOPS_RELAY_DATA); with a config of "
                        f"your own, {HOW_TO_ENABLE}, and pass it as --config")
    return path, None


def main(args) -> int:
    from relay.ledger.query import parse_range, read_report, recorded_zone
    from relay.ledger.report import render

    try:
        path, tz = _locate(args)
        tz = args.timezone or tz or recorded_zone(path)
        start, end = parse_range(args.start, args.end, tz)
        report = read_report(path, start, end, args.by)
    except ConfigError as error:
        print(f"error: invalid configuration:\n{error}", file=sys.stderr)
        return 1
    except (_NoLedger, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render(report, args.format))
    return 0
