"""Settings for ``aae-anomaly fit``: a TOML or JSON file keyed by the estimator's parameter
names, ``KEY=VALUE`` plugin options, and the rule that options given on the command line
win over the file, which wins over the defaults."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..estimators.detector import AAEDetector

# Every estimator parameter but ``verbose``, which the command's --quiet controls.
DEFAULTS: dict[str, Any] = {k: v for k, v in AAEDetector().get_params().items() if k != "verbose"}
# A command-line fit is reproducible unless asked otherwise.
DEFAULTS["random_state"] = 0


def read_config(path: str) -> dict[str, Any]:
    """The settings in a ``.toml`` or ``.json`` file; unknown keys are an error."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".toml":
        settings = _parse_toml(path, text)
    elif file.suffix.lower() == ".json":
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    else:
        raise ValueError(f"{path}: config files must end in .toml or .json")
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a table of settings, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"{path}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(sorted(DEFAULTS))}"
        )
    if isinstance(settings.get("input_shape"), list):
        settings["input_shape"] = tuple(settings["input_shape"])
    return settings


def _parse_toml(path: str, text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 has no tomllib
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(
                f"{path}: reading TOML on Python 3.10 needs the tomli package "
                "(pip install tomli), or use a JSON config file"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None


def parse_options(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """``["n_components=3", "hidden=[64, 32]"]`` to a dict; each value is read as JSON
    when it parses as JSON, else kept as text (so ``activation=relu`` needs no quotes)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {pair!r} is not of the form KEY=VALUE")
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    return options


def merge_settings(config: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, overridden by the config file, overridden by options given explicitly.

    Plugin options (``prior_params``, ``encoder_params``) merge key by key, so
    ``--prior-option std=2`` changes one option the file sets and keeps the others.
    """
    settings = {**DEFAULTS, **config}
    for key, value in explicit.items():
        if key in ("prior_params", "encoder_params") and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return settings
