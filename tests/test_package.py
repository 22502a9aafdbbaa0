"""The built wheel is a complete `smollm2`: every subpackage, the chat templates and every recipe (the
flagship links as real files) as package data; installed from the wheel, a stage runs from a directory
outside the checkout and finds its recipe and chat template by their shipped names."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "smollm2_recipes"
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the checkout, so the build's own folders (build/, *.egg-info) never land in it."""
    src = tmp_path_factory.mktemp("src") / "smollm2-recipes"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(out)],
                          cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("smollm2_recipes-*.whl")
    return built


def test_wheel_holds_every_module_and_subpackage(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert sources and not sources - names, sorted(sources - names)
    for folder in {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}:
        assert f"{folder.relative_to(REPO).as_posix()}/__init__.py" in names  # else find_packages drops it
    assert "smollm2_recipes/post_training/__init__.py" in names


def test_wheel_ships_the_templates_and_recipes_with_flagship_links_as_files(wheel):
    archive = zipfile.ZipFile(wheel)
    shipped = {name.split("smollm2_recipes/data_files/", 1)[1] for name in archive.namelist() if "/data_files/" in name}
    for folder, pattern in (("chat_templates", "*.jinja"), ("recipes", "*.yaml")):
        expected = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob(pattern)}
        assert expected and not expected - shipped, sorted(expected - shipped)
    for stage in ("pretrain", "context_extension", "sft", "dpo"):
        flagship = archive.read(f"smollm2_recipes/data_files/recipes/smollm2/{stage}.yaml")
        assert flagship == (REPO / "recipes" / "smollm2" / "1.7B" / f"{stage}.yaml").read_bytes()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """The wheel installed into its own folder; its dependencies come from the test's environment."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}


def _smollm2(env, cwd, *argv, timeout=600):
    return subprocess.run([sys.executable, "-m", "smollm2_recipes", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_wheel_runs_model_info_outside_the_checkout(installed, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import smollm2_recipes.package_data as p; print(p.data_root())"],
                          cwd=tmp_path, env=installed, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and Path(installed["PYTHONPATH"]) in Path(proc.stdout.strip()).parents, proc.stderr
    proc = _smollm2(installed, tmp_path, "model-info", "135M")
    assert proc.returncode == 0 and "135M" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow  # trains 2 steps of a 2-layer model through the installed `smollm2 sft`
def test_installed_wheel_runs_a_tiny_recipe_by_its_shipped_name_outside_the_checkout(installed, micro_model_dir, tmp_path):
    assert not (tmp_path / "recipes").exists()
    proc = _smollm2(installed, tmp_path, "sft", "recipes/smollm2/tiny/sft.yaml", "--model_name_or_path", micro_model_dir,
                    "--output_dir", "run", "--max_train_samples", "16", "--max_steps", "2", "--arith_eval_samples", "0", "--bf16", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # the shipped generation template was applied (and saved without its {% generation %} markers)
    assert "<|im_start|>" in (tmp_path / "run" / "chat_template.jinja").read_text()
