"""evaluation/lighteval_bridge.py replaces two lighteval 0.13 internals while a run is active (the Registry's
task loader, the details logger's xxhash); setup.py bounds lighteval below 0.14 for it. These tests fail when
those internals move, so a lighteval upgrade is caught here rather than in a half-finished evaluation."""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest

pytest.importorskip("lighteval")

from smollm2_recipes.evaluation import lighteval_bridge as bridge  # noqa: E402

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def test_installed_lighteval_is_inside_the_bound_setup_py_declares():
    bound = re.search(r'"lighteval>=([\d.]+),<([\d.]+)"', SETUP.read_text())
    assert bound, "setup.py must bound lighteval from above"
    low, high = (tuple(int(p) for p in v.split(".")) for v in bound.groups())
    installed = tuple(int(p) for p in re.findall(r"\d+", version("lighteval"))[:2])
    assert low[:2] <= installed < high[:2], (version("lighteval"), bound.groups())


def test_registry_loads_tasks_through_the_static_hook_the_bridge_replaces():
    bridge.import_lighteval()  # keeps torch's grad mode, which lighteval's model module switches off
    from lighteval.pipeline import Pipeline
    from lighteval.tasks.registry import Registry

    hook = Registry.__dict__["load_all_task_configs"]
    assert isinstance(hook, staticmethod)
    assert list(inspect.signature(hook.__func__).parameters) == ["custom_tasks", "load_multilingual"]
    assert "Registry.load_all_task_configs(" in inspect.getsource(Registry.__init__)
    assert "Registry(" in inspect.getsource(Pipeline)  # the Pipeline builds its own Registry, which the hook serves
    assert isinstance(Registry.__dict__["create_custom_tasks_module"], staticmethod)
    # while active, only the suite's module is loaded, and the hook is restored after
    with bridge.suite_registry():
        assert set(Registry.load_all_task_configs()) == {c.name for c in bridge_module_tasks()}
    assert Registry.__dict__["load_all_task_configs"] is hook


def bridge_module_tasks():
    from lighteval.tasks.registry import Registry

    return Registry.create_custom_tasks_module(str(bridge.CUSTOM_TASKS)).TASKS_TABLE


def test_details_logger_still_hashes_strings_with_module_level_xxhash():
    import xxhash
    from lighteval.logging import info_loggers

    assert info_loggers.xxhash is xxhash
    assert "xxhash.xxh64(doc.query)" in inspect.getsource(info_loggers)  # a str, which xxhash 4 refuses:
    with pytest.raises(TypeError):
        xxhash.xxh64("query")
    with bridge.hash_strings():
        assert info_loggers.xxhash.xxh64("query").hexdigest() == xxhash.xxh64(b"query").hexdigest()
    assert info_loggers.xxhash is xxhash
