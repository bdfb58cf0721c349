"""The grid (configs/experiments.yaml, with any --configfile and --config) checked against its
schema, whose defaults it fills in, before anything reads it. Included first by the Snakefile."""

from pathlib import Path

from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = "workflow/schemas/experiments.schema.yaml"  # from the repository root


def validate_grid():
    """Snakemake's `validate`, its error cut to one line naming the key's path: Snakemake's own
    prints the whole schema and config after jsonschema's message, hundreds of lines that never
    say which task or preset holds the typo."""
    try:
        validate(config, str(Path(workflow.basedir, SCHEMA)))
    except WorkflowError as error:
        cause = error.__context__  # validate raises its WorkflowError while handling jsonschema's
        if not isinstance(cause, ValidationError):
            raise
        where = ".".join(map(str, cause.absolute_path)) or "the top level"
        raise WorkflowError(f"experiments config at {where}: {cause.message}; every key is "
                            f"described in {SCHEMA}") from None


validate_grid()
