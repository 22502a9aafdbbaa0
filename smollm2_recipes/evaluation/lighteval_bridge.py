"""The paper's benchmarks through lighteval 0.13: our task names -> lighteval task strings
(`task|shots`), a check that every dataset they need can be reached (the Hub, or a cached copy when
offline) with an error naming the one that cannot, and one lighteval `Pipeline` run whose results come
back as {task: {metric: value}}.

A dataset is reachable when `datasets` can build it: online from the Hub; offline (HF_HUB_OFFLINE=1, or the
Hub not answering) from the Hugging Face cache, so a cache copied from a connected machine (HF_HOME) serves
an offline one; or from a local copy: with `datasets_dir`, a folder `datasets_dir/<owner>/<name>` (e.g. a
`huggingface-cli download --repo-type dataset` snapshot) replaces the Hub repository of that name."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from smollm2_recipes.errors import UserError

CUSTOM_TASKS = Path(__file__).with_name("lighteval_tasks.py")


@dataclass(frozen=True)
class Benchmark:
    lighteval: str  # lighteval task or superset name (a superset runs every `name:*` subtask)
    shots: int  # the paper's shot count
    metric: str  # the number the paper reports
    description: str
    also: tuple[str, ...] = ()  # other metrics the task reports, which `name|shots|metric` may pick

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric, *self.also)


BENCHMARKS: dict[str, Benchmark] = {
    "hellaswag": Benchmark("smollm2_hellaswag", 0, "acc_norm", "HellaSwag, cloze, normalised log-likelihood accuracy"),
    "arc": Benchmark("smollm2_arc", 0, "acc_norm", "ARC Easy + Challenge (mean), cloze, acc_norm"),
    "piqa": Benchmark("smollm2_piqa", 0, "acc_norm", "PIQA, cloze, acc_norm"),
    "mmlu_pro": Benchmark("smollm2_mmlu_pro", 0, "acc_norm", "MMLU-Pro, cloze, acc_norm"),
    "commonsenseqa": Benchmark("smollm2_commonsenseqa", 0, "acc_norm", "CommonsenseQA, cloze, acc_norm"),
    "triviaqa": Benchmark("smollm2_triviaqa", 0, "qem", "TriviaQA (no context), generative, quasi-exact match"),
    "winogrande": Benchmark("smollm2_winogrande", 0, "acc_norm", "WinoGrande, partial scoring, acc_norm"),
    "openbookqa": Benchmark("smollm2_openbookqa", 0, "acc_norm", "OpenBookQA, cloze, acc_norm"),
    "gsm8k": Benchmark("smollm2_gsm8k", 5, "qem", "GSM8K, 5-shot, generative, quasi-exact match on the final number"),
    "bbh": Benchmark("bigbench_hard", 3, "acc", "BIG-Bench Hard, lighteval's 18 multiple-choice subtasks (mean), 3-shot, acc"),
    "ifeval": Benchmark("ifeval", 0, "prompt_level_strict_acc", "IFEval, generative, lighteval's task",
                        ("inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")),
}


def import_lighteval() -> None:
    """Import lighteval's transformers backend once, keeping torch's grad mode: that module (and its model's
    constructor) call torch.set_grad_enabled(False) globally, which breaks any training later in the process."""
    import torch

    enabled = torch.is_grad_enabled()
    try:
        import lighteval.models.transformers.transformers_model  # noqa: F401
    finally:
        torch.set_grad_enabled(enabled)


def task_string(specs: list[tuple[str, int]]) -> str:
    """[(our name, shots)] -> lighteval's comma-separated `task|shots` list."""
    return ",".join(f"{BENCHMARKS[name].lighteval}|{shots}" for name, shots in specs)


# ---------------------------------------------------------------------------------------------------
# Reachability


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the Hub endpoint does not accept a connection within 3 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
        return False
    except OSError:
        return True


@contextlib.contextmanager
def offline_mode(enabled: bool):
    """Make `datasets`/`huggingface_hub` read only their cache (fast failure, no 25 s of retries)."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


# lighteval's own task modules this suite uses, by our task name: "x.py" = lighteval.tasks.tasks.x,
# "x/" = lighteval.tasks.tasks.x.main (ifeval's module fetches nltk data at import: loaded only when asked for)
BUILTIN_MODULES = {"bbh": "bigbench_hard.py", "ifeval": "ifeval/"}


@contextlib.contextmanager
def suite_registry(names: list[str], datasets_dir: str | None = None):
    """lighteval 0.13's Registry imports every task module it ships, and here two of them break the import:
    `tiny_benchmarks` downloads a pickle from GitHub (offline: ConnectionError) and `mt_bench` calls
    `HfApi.list_models(model_name=...)`, which huggingface_hub 2.x rejects. This suite needs only its own
    module plus (when asked for) lighteval's bigbench_hard and ifeval, so while this is active the Registry
    (also the one the Pipeline builds) loads only those, through its own loader functions, and points
    each task whose dataset has a local copy under `datasets_dir` at that folder."""
    import_lighteval()
    from lighteval.tasks.registry import Registry

    original = Registry.__dict__["load_all_task_configs"]

    def load_suite(custom_tasks=None, load_multilingual=False):
        modules = [BUILTIN_MODULES[n] for n in names if n in BUILTIN_MODULES]
        configs = Registry._load_from_files([Path(m) for m in modules if m.endswith(".py")], "lighteval.tasks.tasks")
        configs.update(Registry._load_from_subdirs([Path(m.rstrip("/")) for m in modules if m.endswith("/")]))
        if custom_tasks is not None:
            configs.update(Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks)))
        for name, config in configs.items():
            local = Path(datasets_dir or "", config.hf_repo)
            if datasets_dir and local.is_dir():  # a copy: lighteval's module-level configs stay untouched
                configs[name] = copy.copy(config)
                configs[name].hf_repo = str(local)
        return configs

    Registry.load_all_task_configs = staticmethod(load_suite)
    try:
        yield
    finally:
        Registry.load_all_task_configs = original


@contextlib.contextmanager
def hash_strings():
    """lighteval 0.13's details logger hashes `str`s with xxhash.xxh64, which xxhash 4 refuses ("Strings
    must be encoded before hashing"): while this is active its xxhash encodes them to UTF-8 first."""
    import types

    import xxhash
    import_lighteval()
    from lighteval.logging import info_loggers

    def xxh64(data=b"", *args, **kwargs):
        return xxhash.xxh64(data.encode("utf-8") if isinstance(data, str) else data, *args, **kwargs)

    original = info_loggers.xxhash
    info_loggers.xxhash = types.SimpleNamespace(xxh64=xxh64)
    try:
        yield
    finally:
        info_loggers.xxhash = original


def task_configs(specs: list[tuple[str, int]], datasets_dir: str | None = None) -> dict:
    """lighteval's own Registry resolves the task string: {lighteval task: [LightevalTaskConfig, ...]}."""
    import_lighteval()
    from lighteval.tasks.registry import Registry

    with suite_registry([n for n, _ in specs], datasets_dir):
        registry = Registry(tasks=task_string(specs), custom_tasks=str(CUSTOM_TASKS))
    return registry.task_to_configs


def check_datasets(specs: list[tuple[str, int]], offline: bool | None = None, datasets_dir: str | None = None) -> list[tuple[str, str]]:
    """Every (repo, subset) the tasks need, after checking each can be built; raises UserError naming the
    first one that cannot."""
    import datasets

    offline = hub_offline() if offline is None else offline
    by_task = task_configs(specs, datasets_dir)
    configs = [c for name, _ in specs for key, cs in sorted(by_task.items()) for c in cs  # in the order asked for
               if key == BENCHMARKS[name].lighteval or key.startswith(BENCHMARKS[name].lighteval + ":")]
    needed = list(dict.fromkeys((c.hf_repo, c.hf_subset, c.hf_revision, c.name) for c in configs))
    seen = {}
    with offline_mode(offline):
        for repo, subset, revision, task in needed:
            if (repo, subset) in seen:
                continue
            try:
                datasets.load_dataset_builder(repo, subset, revision=revision)
            except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError...
                where = ("the Hugging Face Hub is not reachable from this machine and the Hugging Face cache "
                         f"({datasets.config.HF_DATASETS_CACHE}) has no copy") if offline else "the Hub refused it"
                raise UserError(
                    f"lighteval task '{task}' needs the dataset '{repo}' (subset '{subset}'), which could not be "
                    f"reached: {where} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). Fix: run where "
                    "huggingface.co is reachable, or copy a Hugging Face cache holding it and set HF_HOME to it with "
                    f"HF_HUB_OFFLINE=1, or pass --datasets_dir with a local copy at <dir>/{repo}. Tasks that need no download: humaneval, passkey, perplexity, arith, chat."
                ) from err
            seen[(repo, subset)] = True
    return list(seen)


# ---------------------------------------------------------------------------------------------------
# Running


def collect(results: dict, specs: list[tuple[str, int]]) -> dict[str, dict[str, float]]:
    """lighteval's `results` ({"smollm2_arc:easy|0": {"acc_norm": .., "acc_norm_stderr": ..}, ...}; saved files
    write `task|shots` as `task:shots`) -> {our name: {metric: value}}, subtasks of a superset averaged
    (their stderrs dropped: a mean of stderrs is not one; lighteval's own `:_average` row is skipped)."""
    out: dict[str, dict[str, float]] = {}
    for name, shots in specs:
        prefix = BENCHMARKS[name].lighteval
        rows = [v for k, v in results.items()
                for task in [k.replace("|", ":").rsplit(":", 1)[0]]
                if (task == prefix or task.startswith(prefix + ":")) and not task.endswith(":_average")]
        if not rows:
            continue
        keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and (len(rows) == 1 or not k.endswith("_stderr"))]
        out[name] = {k: float(sum(r[k] for r in rows if k in r) / len(rows)) for k in keys}
        if len(rows) > 1:
            out[name]["subtasks"] = len(rows)
    return out


def run_lighteval(model_path: str, specs: list[tuple[str, int]], output_dir: str, limit: int | None = None,
                  batch_size: int = 8, use_chat_template: bool | None = None, offline: bool | None = None,
                  datasets_dir: str | None = None) -> dict:
    """Check the datasets, then evaluate `model_path` on `specs` with lighteval's Pipeline (transformers
    backend, fp32; on a CPU-only machine, the CPU). Returns {our name: {metric: value}}."""
    offline = hub_offline() if offline is None else offline
    check_datasets(specs, offline, datasets_dir)

    import torch

    import_lighteval()
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    template = {} if use_chat_template is None else {"override_chat_template": use_chat_template}  # None: lighteval decides
    config = TransformersModelConfig(model_name=model_path, batch_size=batch_size, dtype="float32", device=device, **template)
    params = PipelineParameters(launcher_type=ParallelismManager.NONE, custom_tasks_directory=str(CUSTOM_TASKS),
                                max_samples=limit)
    tracker = EvaluationTracker(output_dir=str(Path(output_dir) / "lighteval"), save_details=True)
    print(f"lighteval: {task_string(specs)} on {model_path}", file=sys.stderr)
    grad_enabled = torch.is_grad_enabled()
    try:
        with offline_mode(offline), suite_registry([n for n, _ in specs], datasets_dir), hash_strings(), \
                contextlib.redirect_stdout(sys.stderr):
            pipeline = Pipeline(tasks=task_string(specs), pipeline_parameters=params, evaluation_tracker=tracker,
                                model_config=config)
            pipeline.evaluate()
            pipeline.save_and_push_results()
            results = pipeline.get_results()["results"]
    finally:
        torch.set_grad_enabled(grad_enabled)  # lighteval's model switches autograd off for the whole process
    return collect(results, specs)
