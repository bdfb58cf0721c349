# One rule per figure (figure_fitness, figure_final, ...), each a pure function of one results
# table, so `snakemake --cores 1 figures/quick/tinystories_fitness.pdf` rebuilds that figure and only what
# it needs, and never reruns evolution. Each has its caption in workflow/report/figure_<figure>.rst.

for _figure, _table in FIGURE_TABLE.items():

    rule:
        name:
            f"figure_{_figure}"
        input:
            grid=figure_grid(_figure),
            table=f"results/{{preset}}/tables/{_table}.csv",
            code=ANALYSIS_CODE,
        output:
            pdf=report(
                f"figures/{{preset}}/{{task}}_{_figure}.pdf",
                caption=f"../report/figure_{_figure}.rst",
                category="Figures",
                subcategory="{task}",
            ),
            png=f"figures/{{preset}}/{{task}}_{_figure}.png",
        params:
            name=_figure,
            stem=lambda w, output: output.pdf[: -len(".pdf")],
        log:
            f"logs/{{preset}}/figures/{{task}}_{_figure}.log",
        conda:
            "../../envs/analysis.yaml"
        localrule: True
        shell:
            "python -m neuroevo.analysis figure {params.name} --grid {input.grid} --task {wildcards.task}"
            " --table {input.table} --out {params.stem} > {log} 2>&1"
