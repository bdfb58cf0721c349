"""The run config's sections as plain dataclasses: each key, its default, and its checks.

A config is loaded and validated before anything is built (`neuroevo.config`), and the workflow
validates every run's config each time it builds its DAG. Kept apart from the engine, these
modules import no torch (of the RL extra they read only ale-py's ROM list and gymnasium's
registry), so that check takes a fraction of a second instead of the two seconds torch takes to
import. One module per task family, each with `TaskConfig` (the `task:` section), `ModelConfig`
(`model:`) and `LAYER_TYPES` (the keys `encoding.ranks` may name); `encoding` and `ga` hold the
shared sections. The engine imports its sections from here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILY_SECTIONS = {
    "tinystories": "neuroevo.sections.language",
    "atari": "neuroevo.sections.atari",
    "car_racing": "neuroevo.sections.car_racing",
    "mujoco": "neuroevo.sections.mujoco",
}
RL_PACKAGES = frozenset({"gymnasium", "ale_py", "mujoco", "Box2D"})  # the `rl` extra


class TaskUnavailable(RuntimeError):
    """A task's optional dependencies are not installed."""


def family_sections(name: str) -> ModuleType:
    """The sections module of a task family (a one-line error for unknown names or extras)."""
    if name not in FAMILY_SECTIONS:
        raise KeyError(f"unknown task {name!r}: choose one of {', '.join(FAMILY_SECTIONS)}")
    return import_task_module(name, FAMILY_SECTIONS[name])


def import_task_module(name: str, module: str) -> ModuleType:
    """Import a module of task family `name`; a missing RL package becomes TaskUnavailable,
    whose message names the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in RL_PACKAGES:
            raise TaskUnavailable(
                f"task {name!r} needs {error.name}: install the RL extra with "
                f"`pip install -e '.[rl]'`") from None
        raise


def check_choices(section: object, choices: tuple[tuple[str, tuple[str, ...]], ...],
                  name: str) -> None:
    """Refuse a value of config section `name` that is not among its key's `choices` (pairs of
    key and valid values), in one line naming the key and every valid value."""
    for key, valid in choices:
        value = getattr(section, key)
        if value not in valid:
            raise ValueError(f"{name}.{key} must be one of {', '.join(valid)}, got {value!r}")


def check_minimums(section: object, minimums: tuple[tuple[str, int, str], ...],
                   name: str = "task") -> None:
    """Refuse a count or width of config section `name` below its minimum, in one line naming
    the key: `minimums` holds (key, least value, note on what the least means); None (a key's
    "no limit") passes, and a tuple's entries are checked one by one. Each TaskConfig and
    ModelConfig calls this in __post_init__, so a run that would start and then fail (a zero
    width as a zero fan-in in the initialisation, a count in its first rollout or batch) stops
    when the config loads."""
    for key, low, note in minimums:
        value = getattr(section, key)
        if isinstance(value, tuple):
            if any(size < low for size in value):
                raise ValueError(f"{name}.{key} entries must each be ≥ {low}{note}, "
                                 f"got {list(value)}")
        elif value is not None and value < low:
            raise ValueError(f"{name}.{key} must be ≥ {low}{note}, got {value}")
