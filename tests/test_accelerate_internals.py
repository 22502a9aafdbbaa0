"""launch_check.py runs accelerate's private `_validate_launch_command` (there is no public function that
merges a config file into the launch arguments). setup.py bounds accelerate to the releases where it has
the shape used here; these tests fail when it moves, so the bound is raised only after checking."""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DDP = ROOT / "recipes" / "accelerate_configs" / "ddp.yaml"


def test_validate_launch_command_takes_args_and_returns_args_defaults_and_precision():
    from accelerate.commands import launch

    validate = getattr(launch, "_validate_launch_command", None)
    assert validate is not None, "accelerate moved _validate_launch_command: update launch_check.py and setup.py's bound"
    assert list(inspect.signature(validate).parameters) == ["args"]
    result = validate(launch.launch_command_parser().parse_args(["--config_file", str(DDP), "train.py"]))
    assert isinstance(result, tuple) and len(result) == 3
    args, defaults, _ = result
    assert defaults.distributed_type.name == "MULTI_GPU" and int(args.num_processes) == 8  # merged from the file


def test_installed_accelerate_is_inside_the_bound_setup_py_declares():
    spec = re.search(r'"(accelerate[<>=!~][^"]*)"', (ROOT / "setup.py").read_text())
    assert spec, "setup.py must declare accelerate with a version bound"
    requirement = Requirement(spec.group(1))
    assert any(s.operator in ("<", "<=", "~=", "==") for s in requirement.specifier), f"{requirement} has no upper bound"
    assert requirement.specifier.contains(version("accelerate")), f"accelerate {version('accelerate')} is outside {requirement}"
