# Beyond the paper (issue #7): mutation effects, the gradient-descent reference, the rank study and
# the sparse encoding. Two engine rules write run-like directories under results/<preset>/beyond/
# (not in git); collect_logs gathers each task's logs into one table under tables/ (committed);
# four analysis rules turn those tables (or runs.csv) into one table and one figure per task,
# which the report's "Beyond the paper" section embeds. `snakemake --cores all beyond --config preset=<p>` builds
# them and the runs they read.


rule mutation_effects:
    input:
        config=engine_configs,
        data=lambda w: runs(w.preset)[w.task]["data"],
        tokenizer=engine_tokenizer,
    output:
        probes="results/{preset}/beyond/mutation_effects/{task}/{variant}/seed{seed}/mutation_effects.csv",
        summary="results/{preset}/beyond/mutation_effects/{task}/{variant}/seed{seed}/summary.json",
    params:
        config=lambda w: variant_config(w.task, w.variant)["config"],
        out_dir=lambda w, output: str(Path(output.probes).parent),
        args=evolve_args,
        settings=engine_config_content,
        probe=probe_args,
    log:
        "logs/{preset}/beyond/mutation_effects/{task}/{variant}/seed{seed}.log",
    conda:
        conda_env
    # it replays the variant's GA run and adds the probes: an evolve job's resources
    threads: lambda w: evolve_resources(w.preset, w.task)["threads"]
    resources:
        mem_mb=lambda w: evolve_resources(w.preset, w.task)["mem_mb"],
        runtime=lambda w: evolve_resources(w.preset, w.task)["runtime"],
        gpu=lambda w: evolve_resources(w.preset, w.task)["gpu"],
    shell:
        "neuroevo mutation-effects {params.config} --out {params.out_dir} {params.args} --workers {threads}"
        " {params.probe} --quiet > {log} 2>&1"


rule gradient:
    input:
        config=engine_configs,
        data=lambda w: runs(w.preset)[w.task]["data"],
        tokenizer=engine_tokenizer,
    output:
        log_csv="results/{preset}/beyond/gradient/{task}/{variant}/seed{seed}/gradient.csv",
        weights="results/{preset}/beyond/gradient/{task}/{variant}/seed{seed}/weights.pt",
        summary="results/{preset}/beyond/gradient/{task}/{variant}/seed{seed}/summary.json",
    params:
        config=lambda w: variant_config(w.task, w.variant)["config"],
        out_dir=lambda w, output: str(Path(output.log_csv).parent),
        args=evolve_args,
        settings=engine_config_content,
        lr=lambda w: preset_config(w.preset)["beyond"]["gradient"].get("lr", 3e-3),
    log:
        "logs/{preset}/beyond/gradient/{task}/{variant}/seed{seed}.log",
    conda:
        conda_env
    # the GA's budget of forward passes, one network: at most an evolve job's resources
    threads: lambda w: evolve_resources(w.preset, w.task)["threads"]
    resources:
        mem_mb=lambda w: evolve_resources(w.preset, w.task)["mem_mb"],
        runtime=lambda w: evolve_resources(w.preset, w.task)["runtime"],
        gpu=lambda w: evolve_resources(w.preset, w.task)["gpu"],
    shell:
        "neuroevo gradient {params.config} --out {params.out_dir} {params.args} --lr {params.lr} --quiet > {log} 2>&1"


rule collect_logs:
    # One task's engine logs of a beyond item in one table, committed with the preset as runs.csv
    # is: the analyses read it, so a display edit redraws them without the engine runs (their
    # directories are not in git). The grid as aggregate has it (`beyond_logs_grid`).
    input:
        grid=beyond_logs_grid,
        logs=lambda w: [f"{d}/{BEYOND_ENGINE[w.item]}" for d in beyond_run_dirs(w.preset, w.item, w.task)],
    output:
        "results/{preset}/tables/beyond/{task}_{item}_logs.csv",
    wildcard_constraints:
        item="|".join(BEYOND_ENGINE),
    log:
        "logs/{preset}/beyond/{task}_{item}_logs.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis collect-logs --item {wildcards.item} --logs {input.logs} --out {output} > {log} 2>&1"


rule beyond_mutation_effects:
    input:
        grid=rules.grid.output[0],
        probes=lambda w: beyond_logs(w.preset, "mutation_effects", w.task),
        code=ANALYSIS_CODE,
    output:
        table=beyond_report("mutation_effects", "table"),
        other_tables=multiext("results/{preset}/tables/beyond/{task}_mutation_effects", ".md", ".tex"),
        figure=beyond_report("mutation_effects", "figure"),
        png="figures/{preset}/beyond/{task}_mutation_effects.png",
    params:
        tolerance=lambda w: config["tasks"][w.task]["neutral_tolerance"],
        table=lambda w, output: output.table[: -len(".csv")],
        figure=lambda w, output: output.figure[: -len(".pdf")],
    log:
        "logs/{preset}/beyond/{task}_mutation_effects.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis mutation-effects --grid {input.grid} --task {wildcards.task}"
        " --probes {input.probes} --tolerance {params.tolerance} --table {params.table} --figure {params.figure}"
        " > {log} 2>&1"


rule beyond_gradient:
    input:
        grid=rules.grid.output[0],
        long=rules.aggregate.output.long,
        logs=lambda w: beyond_logs(w.preset, "gradient", w.task),
        code=ANALYSIS_CODE,
    output:
        table=beyond_report("gradient", "table"),
        other_tables=multiext("results/{preset}/tables/beyond/{task}_gradient", ".md", ".tex"),
        figure=beyond_report("gradient", "figure"),
        png="figures/{preset}/beyond/{task}_gradient.png",
    params:
        table=lambda w, output: output.table[: -len(".csv")],
        figure=lambda w, output: output.figure[: -len(".pdf")],
    log:
        "logs/{preset}/beyond/{task}_gradient.log",
    conda:
        "../../envs/analysis.yaml"
    localrule: True
    shell:
        "python -m neuroevo.analysis gradient --grid {input.grid} --task {wildcards.task} --long {input.long}"
        " --logs {input.logs} --table {params.table} --figure {params.figure} > {log} 2>&1"


# rank_study and sparse: pure functions of runs.csv (subcommands rank-study and sparse)
for _item in BEYOND_RUNS_CSV:

    rule:
        name:
            f"beyond_{_item}"
        input:
            grid=rules.grid.output[0],
            runs=rules.aggregate.output.runs,
            code=ANALYSIS_CODE,
        output:
            table=beyond_report(_item, "table"),
            other_tables=multiext(f"results/{{preset}}/tables/beyond/{{task}}_{_item}", ".md", ".tex"),
            figure=beyond_report(_item, "figure"),
            png=f"figures/{{preset}}/beyond/{{task}}_{_item}.png",
        params:
            subcommand=_item.replace("_", "-"),
            table=lambda w, output: output.table[: -len(".csv")],
            figure=lambda w, output: output.figure[: -len(".pdf")],
        log:
            f"logs/{{preset}}/beyond/{{task}}_{_item}.log",
        conda:
            "../../envs/analysis.yaml"
        localrule: True
        shell:
            "python -m neuroevo.analysis {params.subcommand} --grid {input.grid} --task {wildcards.task}"
            " --runs {input.runs} --table {params.table} --figure {params.figure} > {log} 2>&1"


rule beyond:
    # every analysis beyond the paper of the selected preset, without the report
    input:
        beyond_files(PRESET),
    localrule: True
