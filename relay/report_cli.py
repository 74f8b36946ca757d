"""``genops-relay report``: the cost report, read from the ledger file (nothing else need run).

The ledger is found from ``--ledger`` (a file or its directory) or from the
``genops_ledger`` extension of ``--config``. It reads what the relay has
flushed (at most ``flush_interval`` behind); ``GET /api/v1/cost/report`` on a
running relay includes the rest. Exit status: 0 printed, 1 bad arguments or no
ledger.
"""

from __future__ import annotations

import sys
from pathlib import Path

from relay.errors import ConfigError


def add_arguments(parser) -> None:
    parser.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD) or ISO 8601 time")
    parser.add_argument("--to", dest="end", required=True, help="last day, inclusive (YYYY-MM-DD) or ISO time")
    parser.add_argument("--by", choices=("team", "project", "model", "provider", "customer"),
                        help="break the report down by this dimension")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--config", help="relay config whose genops_ledger extension holds the ledger")
    parser.add_argument("--ledger", help="the ledger file, or the directory holding ledger.sqlite")
    parser.add_argument("--timezone", help="zone for --from/--to dates (default: the ledger's, else UTC)")


def _locate(args) -> tuple[Path, str]:
    from relay.extensions.genops_ledger import Config, ledger_path

    if args.ledger:
        path = Path(args.ledger)
        return (path / "ledger.sqlite" if path.is_dir() else path), args.timezone or "UTC"
    if args.config:
        from relay.config.load import load_file
        from relay.pipeline.registry import default_registry

        config = load_file(args.config, default_registry())
        ledgers = [c for id_, c in config.components["extensions"].items() if id_.type == "genops_ledger"]
        if not ledgers:
            raise ConfigError([])
        return ledger_path(ledgers[0]), args.timezone or ledgers[0].timezone
    return ledger_path(Config()), args.timezone or "UTC"


def main(args) -> int:
    from relay.extensions.genops_ledger import parse_range, read_report
    from relay.ledger.report import render

    try:
        path, tz = _locate(args)
    except ConfigError as error:
        print(f"error: {args.config} has no usable genops_ledger extension" if not error.problems
              else f"error: invalid configuration:\n{error}", file=sys.stderr)
        return 1
    if not path.exists():
        print(f"error: no ledger at {path}", file=sys.stderr)
        return 1
    try:
        start, end = parse_range(args.start, args.end, tz)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = read_report(path, start, end, args.by)
    sys.stdout.write(render(report, args.format))
    return 0
