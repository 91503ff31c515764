"""Run a script of benchmarks/ as a user would, and read the figures it reports."""
import json
import subprocess
import sys

from conftest import REPO_ROOT, subprocess_env


def run_benchmark(tmp_path, script, *args, timeout=600):
    """Run benchmarks/<script> with `args`; (the figures it wrote as JSON, its printed table)."""
    report = tmp_path / "figures.json"
    env = dict(subprocess_env(tmp_path), TMPDIR=str(tmp_path))  # its scratch files too
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args, "--json", str(report)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(report.read_text())
    table, _, printed_json = result.stdout.partition("\n{")
    assert json.loads("{" + printed_json) == figures
    assert "Targets:" in table
    return figures, table
