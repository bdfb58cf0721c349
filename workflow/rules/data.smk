# Data the engine reads but git does not ship. Only the paper preset's TinyStories runs list
# data/tinystories/first10k.txt as an input, so only they trigger this rule; the quick preset reads
# the committed data/quickstories.txt.


rule fetch_tinystories:
    output:
        "data/tinystories/first10k.txt",
    log:
        "logs/fetch_tinystories.log",
    conda:
        "../../envs/engine.yaml"
    localrule: True  # needs internet, which compute nodes often lack
    retries: 2  # a flaky download should not fail the whole grid
    resources:
        runtime=30,
    shell:
        "neuroevo fetch-data tinystories --out data/tinystories > {log} 2>&1"
