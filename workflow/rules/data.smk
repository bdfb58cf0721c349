# Data the engine reads but git does not ship. Only the paper preset's TinyStories runs list
# data/tinystories/first10k.txt as an input, so only they trigger this rule; the quick preset reads
# the committed data/quickstories.txt.


rule fetch_tinystories:
    output:
        stories="data/tinystories/first10k.txt",
        source="data/tinystories/SOURCE.json",  # what was downloaded: revision and sha256s
    log:
        "logs/fetch_tinystories.log",
    conda:
        "../../envs/engine.yaml"
    localrule: True  # needs internet, which compute nodes often lack
    retries: 2  # a flaky download should not fail the whole grid
    resources:
        runtime=30,
    shell:
        "neuroevo fetch-data tinystories --out $(dirname {output.stories}) > {log} 2>&1"
