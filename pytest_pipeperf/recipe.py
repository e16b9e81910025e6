"""Named recipes: the several ways one backend can run one precision (pure, no heavy imports).

A backend with more than one way to run a precision (eager int8: torchao weight-only, torchao
dynamic, bitsandbytes) has a method ``recipes(precision) -> tuple[str, ...]`` whose first name is
the default; backends without it have no named recipes. A user picks recipes per precision with
``--pipeperf-recipe=int8=torchao-int8-weight,int4=bnb-nf4`` (ini ``pipeperf_recipe``) or the
marker's ``recipes={"int8": "bnb-int8"}``; the command line wins per precision. A case whose
backend does not offer the chosen recipe is skipped at collection (another backend may offer it);
a name that no known backend offers is an error listing the valid ones. The recipe that ran is
``runnable.info.notes["recipe"]``, the record's ``recipe`` and the report's ``int8/<recipe>``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence

from pytest_pipeperf.backends.base import AVAILABLE, Availability, BackendError
from pytest_pipeperf.precision import Precision

RecipeChoice = Mapping[Precision, str]
"""Precision -> the recipe name a user chose for it."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
USAGE = "write PRECISION=RECIPE[,PRECISION=RECIPE...], e.g. int8=torchao-int8-weight,int4=bnb-nf4"


class UnknownRecipeError(BackendError):
    """A recipe name the backend does not offer for that precision (a build-time failure)."""


def check_name(precision: Precision, name: object) -> str:
    """A recipe name, validated for syntax only (lower-case letters, digits, ``.-_``).

    :raises ValueError: naming the bad value.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name.strip().lower()):
        raise ValueError(f"invalid {precision.value} recipe name {name!r}; a recipe name is "
                         "lower-case letters, digits, '.', '-' or '_', e.g. torchao-int8-weight")
    return name.strip().lower()


def parse_recipe_choices(text: str) -> dict[Precision, str]:
    """``int8=torchao-int8-weight,int4=bnb-nf4`` -> ``{INT8: ..., INT4: ...}``.

    :raises argparse.ArgumentTypeError: for a missing ``=``, an empty part, an unknown precision,
        a precision named twice or a malformed recipe name.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"empty recipe choice {text!r}; {USAGE}")
    out: dict[Precision, str] = {}
    for part in parts:
        precision_text, sep, name = part.partition("=")
        if not sep or not precision_text.strip() or not name.strip():
            raise argparse.ArgumentTypeError(f"invalid recipe choice {part!r}; {USAGE}")
        try:
            precision = Precision.parse(precision_text)
            if precision in out:
                raise ValueError(f"precision {precision.value} is given two recipes "
                                 f"({out[precision]!r} and {name.strip()!r}); give one")
            out[precision] = check_name(precision, name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (in recipe choice {part!r})") from None
    return out


def parse_marker_recipes(value: object) -> dict[Precision, str]:
    """The marker's ``recipes={"int8": "bnb-int8"}``.

    :raises ValueError: for a non-dict, an unknown precision or a malformed recipe name.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"recipes must be a dict like {{'int8': 'torchao-int8-weight'}}, "
                         f"got {value!r}")
    out: dict[Precision, str] = {}
    for key, name in value.items():
        precision = Precision.parse(str(key))
        if precision in out:
            raise ValueError(f"recipes names precision {precision.value} twice")
        out[precision] = check_name(precision, name)
    return out


def merge(marker: RecipeChoice, cli: RecipeChoice | None) -> dict[Precision, str]:
    """The choice a test's cases build with: the marker's, the command line's on top per
    precision."""
    return {**marker, **(cli or {})}


def format_choice(choice: RecipeChoice) -> str:
    """``int8=bnb-int8,int4=bnb-nf4`` (the option's own syntax)."""
    return ",".join(f"{p.value}={n}" for p, n in choice.items())


def offered(backend: object, precision: Precision) -> tuple[str, ...]:
    """The recipes ``backend`` has for ``precision``, default first; ``()`` when it has no named
    recipes (backends without a ``recipes`` method)."""
    recipes = getattr(backend, "recipes", None)
    if recipes is None:
        return ()
    return tuple(recipes(precision))


def select(backend: str, precision: Precision, available: Sequence[str],
           chosen: Mapping[str, str]) -> str | None:
    """The recipe a build runs: the chosen one, else the backend's default (the first).

    :param backend: the backend's name, for the error.
    :param available: what the backend offers for ``precision`` (default first).
    :param chosen: precision value -> recipe name (``BuildContext.recipes``).
    :returns: ``None`` when the backend has no recipes for ``precision`` and none was chosen.
    :raises UnknownRecipeError: when the chosen name is not offered, listing the valid ones.
    """
    name = chosen.get(precision.value)
    if name is None:
        return available[0] if available else None
    if name not in available:
        valid = ", ".join(available) if available else "none"
        raise UnknownRecipeError(f"backend {backend!r} has no {precision.value} recipe {name!r}; "
                                 f"valid: {valid}")
    return name


def cell_availability(backend: str, precision: Precision, available: Sequence[str],
                      chosen: str | None) -> Availability:
    """Can a case run the chosen recipe? Skips (with a stable reason) when its backend lacks it."""
    if chosen is None or chosen in available:
        return AVAILABLE
    has = f"its {precision.value} recipes: {', '.join(available)}" if available else \
        f"it has no named {precision.value} recipes"
    return Availability(False, f"pipeperf: backend {backend!r} has no {precision.value} recipe "
                               f"{chosen!r} ({has})")


def unknown_message(choice: RecipeChoice,
                    catalog: Mapping[str, Mapping[Precision, Sequence[str]]]) -> str | None:
    """Why ``choice`` names a recipe that no backend of ``catalog`` offers, or ``None``.

    :param choice: precision -> chosen name.
    :param catalog: backend -> precision -> offered names.
    """
    for precision, name in choice.items():
        by_backend = {b: list(r.get(precision, ())) for b, r in catalog.items()}
        if any(name in names for names in by_backend.values()):
            continue
        valid = "; ".join(f"{', '.join(names)} ({b})" for b, names in by_backend.items() if names)
        return (f"unknown {precision.value} recipe {name!r}; valid: "
                f"{valid or f'none (no backend has named {precision.value} recipes)'}")
    return None
