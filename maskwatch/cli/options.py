"""The settings table as command-line options, and settings files (TOML or YAML) read into them."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError
from ..settings import DETECTOR_SETTINGS, SETTINGS, check, det_sizes, flip_mode, on_off


def number(kind: type, lo: float, hi: float | None = None, above: bool = False) -> Any:
    """An argparse type: a ``kind`` (int or float) from ``lo`` (excluded when ``above``) to ``hi`` (None: no
    bound), or a usage error that says the range ("'-3': give a number above 0 and at most 3600")."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or not ((value > lo) if above else (value >= lo)) or (hi is not None and value > hi):
            word = "a whole number" if kind is int else "a number"
            low = f"above {lo:g}" if above else f"of {lo:g} or more"
            raise argparse.ArgumentTypeError(f"'{text}': give {word} {low}" + (f" and at most {hi:g}" if hi is not None else ""))
        return value

    parse.__name__ = kind.__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: list[str],
                  defaults: dict[str, Any] | None = None) -> None:
    """Add ``--name`` options for the given settings (defaults shown in --help)."""
    for name in names:
        s = SETTINGS[name]
        default = (defaults or {}).get(name, s.default)
        extra: dict[str, Any] = {}
        if s.type in (on_off, flip_mode):  # shown as on/off in --help (argparse runs string defaults through the type)
            extra["metavar"] = s.type.__name__
            if default is not argparse.SUPPRESS and isinstance(default, bool):
                default = "on" if default else "off"
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=s.type, default=default,
                            choices=None if s.path_suffix else s.choices, help=s.help, **extra)


def detector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The Detector keyword arguments among the parsed options, checked."""
    return {n: check(n, getattr(args, n)) for n in DETECTOR_SETTINGS if hasattr(args, n)}


def load_settings_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) settings file whose keys are ``parser``'s option
    names (``score-threshold`` or ``score_threshold``). Returns {dest: value}, checked for unknown keys (with the
    nearest valid name), type and range."""
    import difflib
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputError(f"settings file {p}: no such file")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            raw = tomllib.loads(p.read_text(encoding="utf-8"))  # TOML is UTF-8 by its spec, whatever the locale
        elif p.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise InputError(f"settings file {p}: YAML needs PyYAML (pip install pyyaml); or write it as TOML") from None
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        else:
            raise InputError(f"settings file {p}: use a .toml or .yaml file")
    except InputError:
        raise
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise InputError(f"settings file {p}: not valid {p.suffix[1:].upper()} ({e})") from None
    if not isinstance(raw, dict):
        raise InputError(f"settings file {p}: expected key = value pairs at the top level")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            names = [d.replace("_", "-") for d in actions]
            near = difflib.get_close_matches(str(key).replace("_", "-"), names, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(sorted(names))}"
            raise InputError(f"settings file {p}: unknown key '{key}'{hint}")
        action = actions[dest]
        many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
        if many:  # a repeatable option: one value is a list of one (a string used to be split into its characters)
            items = value if isinstance(value, list) else [value]
            out[dest] = [_typed(p, key, action, v) for v in items]
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise InputError(f"settings file {p}: '{key}' must be true or false, got {value!r}")
        elif action.type in (on_off, flip_mode):
            try:
                value = action.type(value)
            except ValueError:
                also = " or auto" if action.type is flip_mode else ""
                raise InputError(f"settings file {p}: '{key}' must be on or off (true or false){also}, got {value!r}") from None
        elif action.type is det_sizes and isinstance(value, list):  # det-size = [800, 1600]
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise InputError(f"settings file {p}: '{key}' must be a size or a list of sizes, got {value!r}")
            value = value[0] if len(value) == 1 else tuple(value)
        elif callable(action.type) and value is not None:
            value = _typed(p, key, action, value)
        if action.choices and value not in action.choices:
            raise InputError(f"settings file {p}: '{key}={value}' is invalid; valid values: {', '.join(map(str, action.choices))}")
        if dest in SETTINGS:
            try:
                check(dest, value)
            except InputError as e:
                raise InputError(f"settings file {p}: {e}") from None
        out[dest] = value
    return out


def _typed(path: Any, key: str, action: argparse.Action, value: Any) -> Any:
    """One settings-file value through its option's type, as the command line would read it: a whole-number option
    refuses 2.7 (int() would cut it to 2) as the command line does."""
    typ: Any = action.type
    name = getattr(typ, "__name__", "value")
    want = {"int": "a whole number", "float": "a number", "str": "text"}.get(name, name if " " in name else f"a {name}")
    if typ is None:
        return value if isinstance(value, str) else str(value)
    if isinstance(value, (bool, list, dict)) or (name == "int" and isinstance(value, float) and not value.is_integer()):
        raise InputError(f"settings file {path}: '{key}' must be {want}, got {value!r}")
    if typ not in (int, float, str) and isinstance(value, (int, float)):
        value = str(value)  # the option's own parser reads text, as from the command line (reconnect = 3)
    try:
        return typ(int(value) if name == "int" and isinstance(value, float) else value)
    except argparse.ArgumentTypeError as e:  # number(): its message says the range
        raise InputError(f"settings file {path}: '{key}' = {value!r}: {e}") from None
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"settings file {path}: '{key}' must be {want}, got {value!r}") from None
