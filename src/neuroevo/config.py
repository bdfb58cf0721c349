"""Run configuration: load YAML, apply a preset and `--set key=value`, validate once, return types.

A config file may `extends:` another (path relative to it); the child's keys win, section by
section. A `presets:` section maps a preset name to dotted overrides (`ga.population: 32`), so a
preset changes only what differs. Validation checks every key against the dataclass of its section
(`neuroevo.sections`; the task's own `TaskConfig`/`ModelConfig` for `task:` and `model:`) and
stops at the first problem with one line naming the key and the valid choices, before anything is
built or written. Nothing here imports torch, so the workflow validates every run's config in
milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from neuroevo.config_files import ConfigError, read_with_extends
from neuroevo.sections import FAMILY_SECTIONS, TaskUnavailable, family_sections
from neuroevo.sections.encoding import EncodingConfig
from neuroevo.sections.ga import GAConfig

TOP_LEVEL_KEYS = ("task", "model", "encoding", "ga", "seed", "device")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; the engine never sees raw dicts after `load_config`."""

    task: Any  # the task module's TaskConfig
    model: Any  # the task module's ModelConfig
    encoding: EncodingConfig
    ga: GAConfig
    seed: int = 0
    device: str = "auto"
    preset: str | None = None  # recorded, not applied again

    def to_dict(self) -> dict:
        return {"task": dataclasses.asdict(self.task), "model": dataclasses.asdict(self.model),
                "encoding": self.encoding.to_dict(), "ga": dataclasses.asdict(self.ga),
                "seed": self.seed, "device": self.device, "preset": self.preset}

    def digest(self, exclude_execution: bool = True) -> str:
        """A short hash of the resolved config, without what must not change results: the device
        and the task's `EXECUTION_ONLY` keys (environment pool sizes), so a job that gets more
        cores, or a GPU, still resumes its own run. The task's and the model's
        `UNSET_NOT_DIGESTED` keys (options added later) count only when set, so adding one left
        earlier runs' digests as they were.
        (`exclude_execution=False` gives the digest runs wrote before pool sizes left it, which
        `run` still accepts.)"""
        data = self.to_dict()
        data.pop("device")
        for key in getattr(self.task, "EXECUTION_ONLY", ()) if exclude_execution else ():
            data["task"].pop(key)
        for section in ("task", "model"):
            for key in getattr(getattr(self, section), "UNSET_NOT_DIGESTED", ()):
                if data[section][key] is None:
                    data[section].pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path, preset: str | None = None,
                overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Read, merge, override and validate a run config (see module docstring)."""
    path = Path(path)
    raw = read_with_extends(path)
    presets = raw.pop("presets", {}) or {}
    origins: dict[str, str] = {}  # dotted key → the preset or --set that gave its value
    if preset is not None:
        if preset not in presets:
            choices = ", ".join(presets) or "none defined"
            raise ConfigError(f"{path}: unknown preset {preset!r} (choices: {choices})")
        for key, value in presets[preset].items():
            _assign(raw, key, value, source=f"preset {preset!r}")
            origins[key] = f"preset {preset!r}"
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set ga.population=64")
        _assign(raw, key.strip(), yaml.safe_load(text), source="--set")
        origins[key.strip()] = f"--set {item}"
    try:
        return _validate(raw, preset=preset, source=str(path))
    except ConfigError as error:  # a typo may be in the file or in what changed it: say which
        named = [origin for key, origin in origins.items()  # the key as a whole name
                 if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", str(error))]
        if not named:
            raise
        raise ConfigError(f"{error} (from {'; '.join(named)})") from None


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild a RunConfig from `RunConfig.to_dict()` (summary.json, checkpoints, elite.json)."""
    data = dict(data)
    return _validate(data, preset=data.pop("preset", None), source="saved config")


# --- internals -----------------------------------------------------------------------------------

def _assign(raw: dict, dotted: str, value: Any, source: str) -> None:
    """Set one dotted key, creating its sections; an empty section (YAML's null) counts as {}."""
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: {dotted!r} goes below a key that is not a section")
    node[leaf] = value


def _validate(raw: dict, preset: str | None, source: str) -> RunConfig:
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (valid: {', '.join(TOP_LEVEL_KEYS)})")
    task_raw = dict(raw.get("task") or {})
    name = task_raw.get("name")
    if name not in FAMILY_SECTIONS:
        raise ConfigError(f"{source}: unknown task {name!r} in task.name "
                          f"(valid: {', '.join(FAMILY_SECTIONS)})")
    try:
        module = family_sections(name)
    except TaskUnavailable as error:
        raise ConfigError(f"{source}: {error}") from None
    encoding = _section(EncodingConfig, raw.get("encoding") or {}, "encoding", source)
    unknown = sorted(set(encoding.ranks) - set(module.LAYER_TYPES))
    if unknown:  # a misspelt layer type would otherwise silently fall back to encoding.rank
        raise ConfigError(f"{source}: unknown layer type encoding.ranks.{unknown[0]} for task "
                          f"{name} (valid: {', '.join(module.LAYER_TYPES)})")
    device = raw.get("device", "auto")
    if device not in DEVICES:
        raise ConfigError(f"{source}: unknown device {device!r} (valid: {', '.join(DEVICES)})")
    seed = raw.get("seed", 0)
    # below 2^32: the RL episode seeds hash it with numpy's SeedSequence as one 32-bit word (a
    # larger seed is split into two words and can alias another seed's episodes)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"{source}: seed must be an integer from 0 to 2^32 − 1, got {seed!r}")
    return RunConfig(
        task=_section(module.TaskConfig, task_raw, "task", source),
        model=_section(module.ModelConfig, raw.get("model") or {}, "model", source),
        encoding=encoding,
        ga=_section(GAConfig, raw.get("ga") or {}, "ga", source),
        seed=seed, device=device, preset=preset)


def _section(cls: type, values: dict, name: str, source: str) -> Any:
    """Build one section's dataclass; its errors name the source, as the top level's do."""
    try:
        return _build_section(cls, values, name)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def _build_section(cls: type, values: dict, name: str) -> Any:
    """Build one section's dataclass, checking every key and its type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key} (valid: {', '.join(sorted(known))})")
    kwargs = {key: _coerce(value, hints[key], f"{name}.{key}") for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        message = str(error)  # the sections' own checks name the key (`task.env_id`) already
        raise ConfigError(message if f"{name}." in message else f"{name}: {message}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's type hint; ints are accepted where floats are expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r} (one item is written "
                              f"[{value}])")
        items = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is typing.Any or (isinstance(hint, type) and isinstance(value, hint)
                              and not (hint is int and isinstance(value, bool))):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key}: expected {name}, got {value!r}")
