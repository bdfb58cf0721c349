"""Analysis of finished engine runs: run directories → tables → figures → report.

The workflow (Snakefile) owns the grid and calls `python -m neuroevo.analysis <subcommand>`; every
step here is a pure function of files already on disk, so regenerating one figure never reruns
evolution. Modules: `grid` (the grid as the workflow resolved it), `runs` (load
and validate one run directory), `aggregate` (all runs → long tables), `stats` (intervals, tests,
effect sizes), `tables`, `style`, `figures`, `report`.
"""
