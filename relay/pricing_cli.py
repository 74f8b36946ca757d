"""``genops-relay price MODEL``: what one LLM call costs, and where the price came from.

It uses the same price book as the genops processor (built-in database, plus an
OpenRouter models file when given), so it answers "why did this span cost X?".
Token counts are inclusive, as in spans: ``--input`` counts the cache tokens and
``--output`` the reasoning tokens. ``--output`` defaults to 0, for calls that
produce no tokens (embeddings). Exit status: 0 priced, 1 unknown model or a
bad models file; the unknown-model message says how to give the model a price.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from relay.config.decode import decode
from relay.errors import ConfigError
from relay.pricing import PricingConfig, Usage, build, cost_of
from relay.pricing.times import describe, parse_instant

_MILLION = 1_000_000
_TOKEN_RATES = ("input", "output", "cache_read", "cache_write", "reasoning")
# What a user can do about a model no source knows: the relay's pricing settings, or this command's file.
_PRICE_IT = """\
to price it:
  pricing: overrides   a rate of its own in the genops processor's config, USD per million tokens:
    processors: {{genops: {{pricing: {{overrides: [{{model: {model}, input: 2.5, output: 10}}]}}}}}}
  pricing: fallback    one rate for every model no source knows: fallback: {{input: 5, output: 15}}
  --models-file FILE   here: an OpenRouter model list (saved GET /api/v1/models) that lists it"""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens") from None
    if value < 0:
        raise argparse.ArgumentTypeError("token counts cannot be negative")
    return value


def _instant(text: str) -> int:
    try:
        return parse_instant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name as a span reports it, e.g. openai/gpt-4o or gpt-4o")
    parser.add_argument("--input", type=_count, required=True, help="input tokens, cache tokens included")
    parser.add_argument("--output", type=_count, default=0,
                        help="output tokens, reasoning included (default 0, as for an embedding call)")
    parser.add_argument("--cache-read", type=_count, default=0, help="input tokens read from the cache")
    parser.add_argument("--cache-write", type=_count, default=0, help="input tokens written to the cache")
    parser.add_argument("--reasoning", type=_count, default=0, help="reasoning tokens among the output")
    parser.add_argument("--at", type=_instant, default=None,
                        help="price in force at this time: YYYY-MM-DD (UTC) or RFC 3339 (default: now)")
    parser.add_argument("--provider", default=None,
                        help="the span's provider (gen_ai.system), used for bare names like gpt-4o")
    parser.add_argument("--models-file", default="",
                        help="OpenRouter model list (JSON of GET /api/v1/models), consulted before the database")


def _rate(value: float | None, default: str) -> str:
    return f"{value * _MILLION:.6g}" if value is not None else f"= {default}"


def main(args: argparse.Namespace) -> int:
    try:
        settings = {"openrouter_models_file": args.models_file} if args.models_file else {}
        config, problems = decode(PricingConfig, settings)
        if problems:
            raise ConfigError(problems)
        book = build(config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    at = args.at if args.at is not None else time.time_ns()
    rates = book.rates([args.model], args.provider, at)
    if rates is None:
        close = book.suggest(args.model)
        hint = f"did you mean: {', '.join(close)}" if close else "no similar model name is known"
        print(f"unknown model {args.model!r}; {hint}", file=sys.stderr)
        print(_PRICE_IT.format(model=json.dumps(args.model)), file=sys.stderr)  # JSON is YAML
        return 1
    usage = Usage(input=args.input, output=args.output, cache_read=args.cache_read,
                  cache_write=args.cache_write, reasoning=args.reasoning)
    cost = cost_of(rates, usage)
    used = cost.rates
    print(f"model     {rates.model}" + (f"   (asked: {args.model})" if args.model != rates.model else ""))
    print(f"source    {rates.source}: {rates.detail}")
    print(f"price at  {describe(at)}")
    for tier in rates.tiers:
        state = "applied" if used is not rates and args.input > tier.above else "not reached"
        changed = ", ".join(f"{k} {getattr(tier, k) * _MILLION:.6g}" for k in _TOKEN_RATES
                            if getattr(tier, k) is not None)
        print(f"tier      above {tier.above} input tokens: {changed} ({state})")
    print()
    print(f"{'part':<12}{'tokens':>12}{'USD per 1M':>16}{'USD':>16}")
    rows = (
        ("input", max(usage.input - usage.cache_read - usage.cache_write, 0), _rate(used.input, "")),
        ("cache_read", usage.cache_read, _rate(used.cache_read, "input")),
        ("cache_write", usage.cache_write, _rate(used.cache_write, "input")),
        ("output", max(usage.output - usage.reasoning, 0), _rate(used.output, "")),
        ("reasoning", usage.reasoning, _rate(used.reasoning, "output")),
    )
    for part, tokens, rate in rows:
        print(f"{part:<12}{tokens:>12}{rate:>16}{cost.parts[part]:>16.8f}")
    print(f"{'request':<12}{1:>12}{f'{used.request:g} per call':>16}{cost.parts['request']:>16.8f}")
    print(f"{'total':<12}{'':>12}{'':>16}{cost.total:>16.8f}")
    if usage.cache_read + usage.cache_write > usage.input or usage.reasoning > usage.output:
        print("note: cache (reasoning) tokens exceed input (output); priced as if the total were their sum")
    return 0
