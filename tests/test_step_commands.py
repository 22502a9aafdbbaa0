"""The quickstart's command runner: each `smollm2` command in a process of its own (forked from a warm
parent on Linux), its output teed to the step's log, its exit status returned. The whole quickstart runs
through it in tests/test_quickstart.py; these check its contract on commands that finish in a moment."""

import sys

import pytest

from smollm2_recipes.offline import step_commands


# forked from this process (Linux) and a fresh `python -m smollm2_recipes` (elsewhere) keep one contract
@pytest.mark.parametrize("fork", [True, False] if step_commands._FORK else [False])
def test_a_command_s_output_and_status_come_back_and_land_in_the_log(tmp_path, capfd, monkeypatch, fork):
    monkeypatch.setattr(step_commands, "_FORK", fork)
    log = tmp_path / "log.txt"
    status, output = step_commands.run_command(["--help"], log)
    assert status == 0 and "quickstart" in output
    status, output = step_commands.run_command(["eval", str(tmp_path / "missing"), "--tasks", "perplexity"], log)
    assert status == 2
    assert output.strip().splitlines() == [f"error: Model path '{tmp_path / 'missing'}' does not exist (and is not a Hub id like owner/name)."]
    assert log.read_text().count("quickstart") >= 1 and "error: Model path" in log.read_text()  # appended, not replaced
    assert "error: Model path" in capfd.readouterr().out  # and shown on the terminal


def test_the_command_runs_in_a_process_of_its_own(tmp_path):
    """The command's process sets its own sys.argv and exits with os._exit; the caller goes on untouched."""
    argv_before = list(sys.argv)
    status, output = step_commands.run_command(["not-a-command"], tmp_path / "log.txt")
    assert status == 2 and "error: unknown command 'not-a-command'" in output
    assert sys.argv == argv_before
