# Data the engine reads but git does not ship. Only the paper preset's TinyStories runs list
# data/tinystories/first10k.txt as an input, so only they trigger fetch_tinystories; the quick
# preset reads the committed data/quickstories.txt. A language run whose engine config sets
# `task.tokenizer: data/tinystories/tokenizer-bpe.json` (the authors' BPE; none does by default)
# lists that file, which fetch_paper_tokenizer downloads.


rule fetch_tinystories:
    output:
        # its record (revision, sha256s) goes to data/tinystories/SOURCE.json, which is no declared
        # output: Snakemake deletes those before a job, and the file keeps fetch_paper_tokenizer's too
        stories="data/tinystories/first10k.txt",
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


rule fetch_paper_tokenizer:
    output:
        "data/tinystories/tokenizer-bpe.json",
    log:
        "logs/fetch_paper_tokenizer.log",
    conda:
        "../../envs/engine.yaml"
    localrule: True  # needs internet
    retries: 2
    resources:
        runtime=5,
    shell:
        "neuroevo fetch-data paper-tokenizer --out $(dirname {output}) > {log} 2>&1"
