# Runs → long tables → the paper's statistics tables. Cheap pandas work: run on the submit host.


rule grid:
    # The preset's grid as the analysis needs it; params make a grid edit rerun what depends on it.
    output:
        "results/{preset}/grid.json",
    params:
        spec=lambda w: json.dumps(grid_spec(w.preset), indent=2),
    log:
        "logs/{preset}/grid.log",
    localrule: True
    run:
        Path(output[0]).write_text(f"{params.spec}\n")
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule aggregate:
    input:
        # ancient: the runs, not the grid's display settings (titles, labels), decide when to
        # aggregate again, so a figure of a preset whose run directories are gone (the committed
        # ones) can be redrawn after a title edit without rerunning evolution
        # (a path of its own: ancient() flags the file object it is given, and rules.grid's is
        # shared with the rules below, which must see an edit)
        grid=ancient("results/{preset}/grid.json"),
        summaries=lambda w: [f"{d}/summary.json" for d in run_dirs(w.preset)],
        # a grid edit that adds runs is seen even without their directories or Snakemake's metadata
        added=lambda w: grid_if_runs_were_added(w.preset),
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
        "python -m neuroevo.analysis tables --grid {input.grid} --runs {input.runs} --out-dir {params.out_dir}"
        " > {log} 2>&1"
