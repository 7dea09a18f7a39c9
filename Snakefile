import os
import sys

from snakemake.utils import min_version

# The library of this checkout, installed or not, for Snakemake and every job: scripts inherit
# PYTHONPATH, and, in a conda environment (where Snakemake drops PYTHONPATH), Snakemake's own
# sys.path, which its script preamble appends. envs/xaimed.yaml therefore lists no xaimed.
XAIMED_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, XAIMED_SRC)
_pythonpath = os.environ.get("PYTHONPATH", "").split(os.pathsep)
if _pythonpath[0] != XAIMED_SRC:  # once, also in cluster jobs, which inherit it
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [XAIMED_SRC, *_pythonpath]))
    )

from xaimed.config.schema import check_config_files
from xaimed.config.record import check_config_record, write_config_record

min_version("9.0")


# The demo config unless a config file is given: `--configfile config/paper.yaml` would otherwise
# be merged into it (the demo's phantom datasets mixed with the paper's of the same names).
if not workflow.overwrite_configfiles:
    # Read strictly first: Snakemake's message for a YAML error names neither file nor line.
    check_config_files(["config/config.yaml"])

    configfile: "config/config.yaml"


# Results are kept per config: another config's run into this results/ is refused before any
# job (jobs on a cluster re-read this file: only the main process checks and records).
if workflow.is_main_process:
    check_config_record(workflow.configfiles, workflow.main_snakefile)


onstart:
    # onstart runs only when jobs start: dry runs, --lint and "nothing to be done" record nothing
    write_config_record(workflow.configfiles)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/generalise.smk"
include: "workflow/rules/quality.smk"


# Quick jobs run where Snakemake runs (the login node under profiles/slurm) rather than queue.
localrules:
    phantom,
    collect_explanations,
    folds,
    fold_metrics,
    compare_models,
    compare_methods,
    classification_table,
    explanation_tables,
    cam_gallery,
    rank_models,
    cd_diagram,
    data_summary,
    data_examples,
    classification_figures,
    explanation_figures,
    timing_figure,
    generalisation_tables,
    generalisation_figure,
    quality_tables,
    localisation_figure,
    repeatability_figure,


rule all:
    default_target: True
    input:
        all_targets(),
        intermediate_targets(),
