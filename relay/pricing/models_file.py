"""OpenRouter's model list (the JSON of ``GET /api/v1/models``) as a price source.

Prices there are decimal strings in USD per token (per call for ``request``).
How each value is read:

- ``prompt``/``completion`` are required; ``"0"`` is a real price of zero (free
  models, ``:free`` variants).
- ``request`` is a per-call fee; missing or ``"0"`` means none.
- ``input_cache_read``, ``input_cache_write`` and ``internal_reasoning``: missing or
  ``"0"`` means "no separate rate", so those tokens are priced at the prompt
  (completion) rate. OpenRouter lists ``internal_reasoning: "0"`` on models whose
  reasoning tokens are billed as completion tokens, so a zero there cannot mean
  free; the cache fields follow the same reading, which can overstate a cost
  but never hides one.
- ``"-1"`` in any of these marks variable pricing (``openrouter/auto`` bills the
  model it routes to): the id is known but cannot be priced per token.
- ``image``, ``web_search`` and other fields are not per-token prices of the
  text call and are ignored.

Entries are found by ``id`` and, failing that, by ``canonical_slug``.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from relay.errors import ConfigError, Problem
from relay.pricing.cost import Rates
from relay.pricing.source import MISS, Answer

VARIABLE = Answer(variable=True)
_FIELDS = {"prompt": "input", "completion": "output", "request": "request",
           "input_cache_read": "cache_read", "input_cache_write": "cache_write",
           "internal_reasoning": "reasoning"}
_REQUIRED = ("prompt", "completion")
_SEPARATE_RATES = ("input_cache_read", "input_cache_write", "internal_reasoning")
_MAX_PROBLEMS = 10


class _Malformed(ValueError):
    pass


def _price(pricing: dict, key: str) -> Decimal | None:
    if key not in pricing or pricing[key] is None:
        if key in _REQUIRED:
            raise _Malformed(f"pricing.{key} is missing")
        return None
    value = pricing[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Malformed(f"pricing.{key} must be a decimal string, got {type(value).__name__}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Malformed(f'pricing.{key} "{value}" is not a decimal number') from None
    if not number.is_finite() or (number < 0 and number != -1):
        raise _Malformed(f'pricing.{key} "{value}" is not a price (USD per token, or -1 for variable)')
    return number


def _entry(item: object, path: str) -> tuple[list[str], Answer]:
    if not isinstance(item, dict):
        raise _Malformed("is not an object")
    model = item.get("id")
    if not isinstance(model, str) or not model.strip():
        raise _Malformed("has no string id")
    pricing = item.get("pricing")
    if not isinstance(pricing, dict):
        raise _Malformed(f'("{model}") has no pricing object')
    try:
        prices = {key: _price(pricing, key) for key in _FIELDS}
    except _Malformed as error:
        raise _Malformed(f'("{model}"): {error}') from None
    names = [model.strip().lower()]
    slug = item.get("canonical_slug")
    if isinstance(slug, str) and slug.strip():
        names.append(slug.strip().lower())
    if any(price == -1 for price in prices.values()):
        return names, VARIABLE
    for key in _SEPARATE_RATES:
        if prices[key] == 0:
            prices[key] = None
    rates = Rates(model=model.strip(), source="models_file", detail=path,
                  **{_FIELDS[key]: float(value) for key, value in prices.items() if value is not None})
    return names, Answer(rates)


def load(path: str) -> tuple[dict[str, Answer], list[str]]:
    """(answers by lower-case id and canonical slug, problems naming the file and the entry)."""
    try:
        with open(path, "rb") as stream:
            raw = json.load(stream)
    except OSError as error:
        return {}, [f'cannot read "{path}": {error.strerror or error}']
    except (ValueError, UnicodeDecodeError) as error:
        return {}, [f'"{path}" is not valid JSON: {error}']
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, list):
        return {}, [(f'"{path}" is not an OpenRouter model list: expected an object with a "data" list '
                     "(the response of GET /api/v1/models)")]
    by_id: dict[str, Answer] = {}
    by_slug: dict[str, Answer] = {}
    problems: list[str] = []
    for index, item in enumerate(data):
        try:
            names, answer = _entry(item, path)
        except _Malformed as error:
            problems.append(f'"{path}": data[{index}] {error}')
            continue
        by_id.setdefault(names[0], answer)
        for slug in names[1:]:
            by_slug.setdefault(slug, answer)
    if len(problems) > _MAX_PROBLEMS:
        more = len(problems) - _MAX_PROBLEMS
        problems = problems[:_MAX_PROBLEMS] + [f'"{path}": and {more} more malformed entries']
    return {**by_slug, **by_id}, problems


class ModelsFileSource:
    name = "models_file"

    def __init__(self, path: str, answers: dict | None = None):
        """``answers``: the file as its config's validation read it; else it is read here."""
        if answers is None:
            answers, problems = load(path)
            if problems:
                raise ConfigError([Problem(("openrouter_models_file",), message) for message in problems])
        self._answers = answers

    def lookup(self, form: str, provider: str | None, at: int) -> Answer:
        return self._answers.get(form, MISS)

    def known_names(self) -> list[str]:
        return [name for name, answer in self._answers.items() if answer.rates is not None]
