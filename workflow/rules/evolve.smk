# One engine run per (preset, task, variant, seed). The engine owns the run; the workflow only
# chooses its config, overrides and directory.
#
# Only summary.json (written last, so it means "finished") is declared as output: Snakemake deletes
# declared outputs before a (re)try, and deleting fitness.csv would make `--resume` continue a log
# that lost its first generations. The aggregate rule reads the sibling files and validates them.


rule evolve:
    input:
        config=engine_configs,
        data=lambda w: runs(w.preset)[w.task]["data"],
        tokenizer=engine_tokenizer,
    output:
        summary="results/{preset}/runs/{task}/{variant}/seed{seed}/summary.json",
    params:
        config=lambda w: variant_config(w.task, w.variant)["config"],
        run_dir=lambda w, output: str(Path(output.summary).parent),
        args=evolve_args,
        settings=engine_config_content,
    log:
        "logs/{preset}/evolve/{task}/{variant}/seed{seed}.log",
    conda:
        conda_env
    threads: lambda w: evolve_resources(w.preset, w.task)["threads"]
    resources:
        # a retry after running out of memory asks for more (one after a timeout resumes anyway)
        mem_mb=lambda w, attempt: evolve_resources(w.preset, w.task)["mem_mb"] * attempt,
        runtime=lambda w: evolve_resources(w.preset, w.task)["runtime"],
        gpu=lambda w: evolve_resources(w.preset, w.task)["gpu"],
    # A retry resumes from RUN_DIR/checkpoint (--resume is a no-op on a fresh directory), so a
    # preempted or timed-out job loses at most the work since its last checkpoint (30 s and a
    # generation: run.CHECKPOINT_SECONDS). A run directory that another config
    # or other data wrote (Snakemake reran the job after an edit) is cleared and run again.
    retries: 2
    shell:
        # Snakemake deletes the log before each attempt, so it holds the last attempt's output
        # (after a header with its start time); a failed attempt's log is printed, and kept in
        # .snakemake/log/, with --show-failed-logs, which both profiles set. (`>>` rather than
        # `>` only because editing the command would rerun every recorded run: Snakemake's
        # code trigger.)
        "echo \"== $(date -u +%Y-%m-%dT%H:%M:%SZ) neuroevo run\" >> {log}; "
        "neuroevo run {params.config} --out {params.run_dir} {params.args} --workers {threads}"
        " --resume --restart-changed >> {log} 2>&1"
