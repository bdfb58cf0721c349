# The generated paper: paper/<preset>/report.md and a self-contained report.html with the setup,
# every table, every figure, the paper-vs-reproduction comparison and "Beyond the paper".


rule report:
    input:
        grid=rules.grid.output[0],
        runs=rules.aggregate.output.runs,
        tables=rules.tables.output.markdown,
        figures=lambda w: figure_files(w.preset),
        beyond_tables=lambda w: beyond_outputs(w.preset, f"results/{w.preset}/tables", ("md",)),
        beyond_figures=lambda w: beyond_outputs(w.preset, f"figures/{w.preset}", ("png",)),
        code=ANALYSIS_CODE,
        # the paper-vs-reproduction table reads population, elites and evaluation set from them
        engine=lambda w: preset_engine_configs(w.preset),
    output:
        md="paper/{preset}/report.md",
        html=report("paper/{preset}/report.html", caption="../report/report.rst", category="Report"),
    params:
        tables_dir=lambda w, input: str(Path(input.tables[0]).parent),
    log:
        "logs/{preset}/report.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis report --grid {input.grid} --runs {input.runs} --tables-dir {params.tables_dir}"
        " --figures {input.figures} --beyond-tables {input.beyond_tables} --beyond-figures {input.beyond_figures}"
        " --md {output.md} --html {output.html} > {log} 2>&1"
