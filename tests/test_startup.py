"""suite/startup.py: the start-up table (its numbers are measured, never asserted)."""
import subprocess
import sys

from helpers import ROOT, env

from suite.startup import PHASES


def test_the_start_up_table_has_every_phase_and_the_total_beyond_torch():
    proc = subprocess.run([sys.executable, "-m", "suite.bench", "--startup", "--repeats", "1",
                           "--config", "configs/quickstart.yaml", "data.name=synthetic", "model.name=tiny_mlp"],
                          capture_output=True, text=True, cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("start-up of configs/quickstart.yaml data.name=synthetic model.name=tiny_mlp: "
                               "1 fresh processes, load average ")
    assert lines[0].endswith("1 thread(s)")
    phases = [line.split("|")[1].strip() for line in lines[3:]]
    assert phases == [p for p in PHASES if p != "wandb offline"] + ["to first step, beyond torch"]
