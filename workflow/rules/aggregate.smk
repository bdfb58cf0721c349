# Runs → long tables → the paper's statistics tables. Cheap pandas work: run on the submit host.


rule grid:
    # The preset's grid as the analysis needs it. The config files as input (`grid_configs`): an
    # edit that changes the grid reruns it by file time, also where Snakemake has no metadata to
    # compare `params` with (a fresh clone, whose committed grid.json would otherwise hide the
    # edit from everything downstream); one that leaves it as it is reruns nothing.
    input:
        grid_configs,
    output:
        "results/{preset}/grid.json",
    params:
        text=lambda w: grid_text(w.preset),
    log:
        "logs/{preset}/grid.log",
    localrule: True
    run:
        Path(output[0]).write_text(params.text)
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule aggregate:
    input:
        # The grid as `ancient` unless it gained runs that runs.csv lacks: display edits (titles,
        # labels) must not rerun aggregate, which reads every run, so a committed preset (run
        # directories not in git) redraws its figures without rerunning evolution; added runs
        # must, also in a fresh clone without Snakemake's metadata.
        grid=aggregate_grid,
        summaries=lambda w: [f"{d}/summary.json" for d in run_dirs(w.preset)],
    output:
        long="results/{preset}/tables/fitness_long.csv",
        runs="results/{preset}/tables/runs.csv",
    params:
        runs_root="results/{preset}/runs",
    log:
        "logs/{preset}/aggregate.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis aggregate --grid {input.grid} --runs-root {params.runs_root}"
        " --long {output.long} --runs {output.runs} > {log} 2>&1"


rule tables:
    input:
        grid=rules.grid.output[0],
        runs=rules.aggregate.output.runs,
        long=rules.aggregate.output.long,
        code=ANALYSIS_CODE,
    output:
        final=report(
            "results/{preset}/tables/final.csv", caption="../report/table_final.rst", category="Tables"
        ),
        kruskal=report(
            "results/{preset}/tables/kruskal.csv", caption="../report/table_kruskal.rst", category="Tables"
        ),
        pairwise=report(
            "results/{preset}/tables/pairwise.csv", caption="../report/table_pairwise.rst", category="Tables"
        ),
        stages=report(
            "results/{preset}/tables/stages.csv", caption="../report/table_stages.rst", category="Tables"
        ),
        milestones=report(
            "results/{preset}/tables/milestones.csv", caption="../report/table_milestones.rst", category="Tables"
        ),
        markdown=expand("results/{{preset}}/tables/{name}.md", name=TABLES),
        latex=expand("results/{{preset}}/tables/{name}.tex", name=TABLES),
    params:
        out_dir=lambda w, output: str(Path(output.final).parent),
    log:
        "logs/{preset}/tables.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis tables --grid {input.grid} --runs {input.runs} --long {input.long}"
        " --out-dir {params.out_dir}"
        " > {log} 2>&1"
