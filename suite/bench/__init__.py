"""Speed of the suite's real hot paths on this machine: `python -m suite.bench` (pp-bench).

One module per thing measured: training (the runner's step, dense against masked), mask_update,
data_path (the two loaders), openlth (LeNet head to head), gpt (the character GPT: masked over
dense, the suite's step against a plain PyTorch loop, tokens/s), gpu_check (GPU first contact);
common holds the plan and timing helpers, report the targets and tables, cli the command (its
docstring says what each section measures)."""
from suite.bench.cli import main, parse_args, plan_from, run_all  # noqa: F401
from suite.bench.common import Plan, cut_epochs, machine, verdict  # noqa: F401
from suite.bench.data_path import synthetic_source  # noqa: F401
from suite.bench.report import check_targets, format_report  # noqa: F401
from suite.bench.training import gpu_epoch  # noqa: F401
