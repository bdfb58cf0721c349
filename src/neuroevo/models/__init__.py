"""The paper's networks, built from population-batched layers (see neuroevo.layers)."""

from __future__ import annotations


def check_sizes(section: object, minimums: tuple[tuple[str, int, str], ...]) -> None:
    """Refuse a `model:` width or count below its minimum, in one line naming the key: `minimums`
    holds (key, least value, note on what the least means); a tuple's entries are checked one by
    one. Each ModelConfig calls this in __post_init__, as TaskConfigs call
    `tasks.check_minimums`: a zero width would otherwise surface mid-build as a zero fan-in in
    the weight initialisation (ZeroDivisionError) or as a factor's rank bound, which names the
    encoding instead of the size."""
    for key, low, note in minimums:
        value = getattr(section, key)
        if isinstance(value, tuple):
            if any(size < low for size in value):
                raise ValueError(f"model.{key} entries must each be ≥ {low}{note}, "
                                 f"got {list(value)}")
        elif value < low:
            raise ValueError(f"model.{key} must be ≥ {low}{note}, got {value}")
