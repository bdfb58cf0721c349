"""Reproduce Garbus & Pollack (2025): evolve every run of the grid, aggregate, test, plot, report.

    snakemake --cores 2 --config preset=quick            # CPU check in minutes
    snakemake --workflow-profile profiles/slurm          # the paper's grid on SLURM

The grid is configs/experiments.yaml, described key by key in workflow/schemas/; usage in
workflow/README.md.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "configs/experiments.yaml"


include: "workflow/rules/validate.smk"
include: "workflow/rules/common.smk"


wildcard_constraints:
    **WILDCARDS,


include: "workflow/rules/data.smk"
include: "workflow/rules/evolve.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/beyond.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(PRESET),
    default_target: True
