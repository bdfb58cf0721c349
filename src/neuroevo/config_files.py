"""Reading a run config's YAML files: a file merged over the one it `extends`, and so on up.

Kept apart from `neuroevo.config` (which validates through the task modules, and so imports
torch) so that the analysis, whose environment has no torch, reads the configs exactly as the
engine does (`analysis.grid.engine_settings`).
"""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the key and the fix."""


def read_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The sections of the config at `path`, merged over those of the file it `extends` (the
    child's keys winning section by section), with one-line errors for a missing file, a loop,
    invalid YAML or a file that is not a mapping."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = read_with_extends(path.parent / parent, seen + (path.resolve(),))
    return _merge(base, data)


def _merge(base: dict, child: dict) -> dict:
    """The child's keys over the base's, section by section; an empty section (`ga:` with
    nothing under it, which YAML reads as null) keeps the base's, as `ga: {}` does."""
    out = dict(base)
    for key, value in child.items():
        if value is None and isinstance(out.get(key), dict):
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
