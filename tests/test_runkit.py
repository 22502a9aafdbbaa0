"""The run kit: atomic writes, the output-folder claim and lock (with real processes), and model/tokenizer
loading that names the folder and file at fault."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import LOCK_FILE, claim_output_dir, load_model, load_tokenizer, write_atomic, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    assert write_atomic(target, "first") == target
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]
    write_json_atomic(tmp_path / "b.json", {"x": [1, 2], "p": tmp_path})
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": [1, 2], "p": str(tmp_path)}


def test_write_atomic_failure_keeps_old_file(tmp_path):
    target = tmp_path / "a.json"
    write_atomic(target, "old")
    with pytest.raises(TypeError):
        write_atomic(target, 123)  # neither str nor bytes: refused before anything is written
    assert target.read_text() == "old"
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "d", "x")  # the rename fails: the temporary file is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"] and not any((tmp_path / "d").iterdir())


def test_claim_refuses_file_and_finished_run(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("keep")
    with pytest.raises(UserError, match="existing file"):
        with claim_output_dir(a_file, finished_marker="done.json"):
            pass
    assert a_file.read_text() == "keep"
    run = tmp_path / "run"
    run.mkdir()
    (run / "done.json").write_text("{}")
    with pytest.raises(UserError, match="finished run"):
        with claim_output_dir(run, finished_marker="done.json"):
            pass
    with pytest.raises(UserError, match="nothing to resume"):
        with claim_output_dir(run, finished_marker="done.json", overwrite=True, resume=True):
            pass
    assert sorted(p.name for p in run.iterdir()) == ["done.json"]
    with claim_output_dir(run, finished_marker="done.json", overwrite=True) as out:
        assert not (out / "done.json").exists()  # a run being overwritten no longer claims to be finished
        holder = json.loads((out / LOCK_FILE).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
    assert not (run / LOCK_FILE).exists()


def test_lock_released_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with claim_output_dir(tmp_path / "run", finished_marker="done.json"):
            raise RuntimeError("boom")
    assert not (tmp_path / "run" / LOCK_FILE).exists()


HOLDER = textwrap.dedent("""
    import sys, time, os
    from smollm2_recipes.runkit import claim_output_dir
    with claim_output_dir(sys.argv[1], finished_marker="done.json"):
        print("held", flush=True)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), 9)
        time.sleep(60)
""")


def _holder(out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), mode], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_refused_naming_pid_and_host(tmp_path):
    out = tmp_path / "run"
    first = _holder(out, "hold")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        second = subprocess.run([sys.executable, "-c", HOLDER, str(out), "hold"], capture_output=True, text=True,
                                env=env, timeout=60)
        assert second.returncode != 0
        assert f"PID {first.pid} on host {socket.gethostname()}" in second.stderr
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == first.pid  # the holder's lock untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_stale_lock_of_killed_run_taken_over_with_note(tmp_path, capsys):
    out = tmp_path / "run"
    dead = _holder(out, "die")
    assert dead.wait(timeout=30) == -signal.SIGKILL
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == dead.pid  # left behind by the kill
    with claim_output_dir(out, finished_marker="done.json"):
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "stale lock" in err and f"PID {dead.pid}" in err


def test_lock_of_other_host_is_respected(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere-node-7"}))
    with pytest.raises(UserError, match="PID 1 on host elsewhere-node-7"):
        with claim_output_dir(out, finished_marker="done.json"):
            pass


def test_load_model_names_missing_folder_and_truncated_file(tmp_path, micro_model_dir):
    import shutil

    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nowhere" / "model"))
    broken = tmp_path / "broken"
    shutil.copytree(micro_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match=r"broken'.*model\.safetensors is truncated"):
        load_model(str(broken))
    (broken / "config.json").unlink()
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(broken))
    model = load_model(micro_model_dir)
    assert model.config.num_hidden_layers == 2


def test_load_tokenizer_resolves_embedded_and_refuses_corrupt(tmp_path, micro_model_dir):
    tok = load_tokenizer("embedded:smollm2-tokenizer")
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0
    bad = tmp_path / "tok"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    (bad / "tokenizer_config.json").write_text("{}")
    with pytest.raises(UserError, match="Cannot load the tokenizer from folder"):
        load_tokenizer(str(bad))
