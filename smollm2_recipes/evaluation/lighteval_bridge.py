"""The paper's benchmarks through lighteval 0.13: our task names -> the SmolLM2 tasks of smollm2_tasks.py
(`task|shots`), a check that every dataset they need can be reached (the Hub, or a cached copy when
offline) with an error naming the one that cannot, and one lighteval `Pipeline` run (bf16 on a GPU, as the
paper ran; fp32 on a CPU) whose results come back as {task: {metric: value}}.

A dataset is reachable when `datasets` can build it: online from the Hub; offline (HF_HUB_OFFLINE=1, or the
Hub not answering) from the Hugging Face cache, so a cache copied from a connected machine (HF_HOME) serves
an offline one; or from a local copy: with `datasets_dir`, a folder `datasets_dir/<owner>/<name>` (e.g. a
`huggingface-cli download --repo-type dataset` snapshot) replaces the Hub repository of that name.

Two lighteval internals are replaced while a run is active (suite_registry, hash_strings); setup.py bounds
lighteval below 0.14 for them and tests/test_eval_lighteval_internals.py fails when they move."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from smollm2_recipes.errors import UserError

CUSTOM_TASKS = Path(__file__).with_name("smollm2_tasks.py")


@dataclass(frozen=True)
class Benchmark:
    lighteval: str  # task or superset name in smollm2_tasks.py (a superset runs every `name:*` subtask)
    shots: int  # the paper's shot count (smollm2_base.txt / smollm2_instruct.txt)
    metric: str  # the number the paper reports
    description: str
    also: tuple[str, ...] = ()  # other metrics the task reports, which `name|shots|metric` may pick

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric, *self.also)


ACC_NORM = "acc_norm: log-likelihood / characters without the leading space"
BENCHMARKS: dict[str, Benchmark] = {
    "hellaswag": Benchmark("smollm2_hellaswag", 0, "acc_norm", f"HellaSwag, {ACC_NORM}"),
    "arc": Benchmark("smollm2_arc", 0, "acc_norm", f"ARC Easy + Challenge (mean), {ACC_NORM}"),
    "piqa": Benchmark("smollm2_piqa", 0, "acc_norm", f"PIQA, {ACC_NORM}"),
    "mmlu_pro": Benchmark("smollm2_mmlu_pro", 0, "acc_norm", f"MMLU-Pro, lettered multiple choice (MCF), {ACC_NORM}"),
    "commonsenseqa": Benchmark("smollm2_commonsense_qa", 0, "acc_norm", f"CommonsenseQA, {ACC_NORM}"),
    "triviaqa": Benchmark("smollm2_trivia_qa", 0, "qem", "TriviaQA (no context), generative, quasi-exact match"),
    "winogrande": Benchmark("smollm2_winogrande", 0, "acc_norm", f"WinoGrande, partial scoring, {ACC_NORM}"),
    "openbookqa": Benchmark("smollm2_openbook_qa", 0, "acc_norm", f"OpenBookQA, {ACC_NORM}"),
    "gsm8k": Benchmark("smollm2_gsm8k", 5, "qem", "GSM8K, 5-shot, generative, quasi-exact match on the final number"),
    "bbh": Benchmark("smollm2_bbh", 3, "em", "BIG-Bench Hard, 27 generative subtasks (mean), 3-shot, exact match"),
    "ifeval": Benchmark("smollm2_ifeval", 0, "prompt_level_strict_acc", "IFEval, generative (needs langdetect + nltk punkt)",
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


@contextlib.contextmanager
def suite_registry(datasets_dir: str | None = None):
    """lighteval 0.13's Registry (also the one the Pipeline builds) imports every task module it ships
    before adding custom ones, and two of them break offline: `tiny_benchmarks` downloads a pickle from
    GitHub and `mt_bench` calls `HfApi.list_models(model_name=...)`, which huggingface_hub 2.x rejects. The
    suite lives in smollm2_tasks.py alone, so while this is active the Registry loads only that module, and
    points each task whose dataset has a local copy under `datasets_dir` at that folder."""
    import_lighteval()
    from lighteval.tasks.registry import Registry

    original = Registry.__dict__["load_all_task_configs"]

    def load_suite(custom_tasks=None, load_multilingual=False):
        module = Registry.create_custom_tasks_module(custom_tasks if custom_tasks is not None else CUSTOM_TASKS)
        configs = {config.name: config for config in module.TASKS_TABLE}
        for name, config in configs.items():
            local = Path(datasets_dir or "", config.hf_repo)
            if datasets_dir and local.is_dir():  # a copy: the module's configs stay untouched
                configs[name] = copy.copy(config)
                configs[name].hf_repo, configs[name].hf_revision = str(local), None  # a folder has no Hub revision
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

    with suite_registry(datasets_dir):
        registry = Registry(tasks=task_string(specs), custom_tasks=str(CUSTOM_TASKS))
    return registry.task_to_configs


def check_ifeval_checker(offline: bool) -> None:
    """lighteval's IFEval checks import `langdetect` and, when imported, download nltk's punkt tokenizers
    unless nltk finds them: without the package, or offline without the data, IFEval cannot be scored."""
    if importlib.util.find_spec("langdetect") is None:
        raise UserError("Task 'ifeval' needs the package langdetect for lighteval's instruction checks, and it is not "
                        "installed. Fix: pip install langdetect==1.0.9 (or drop ifeval from the tasks).")
    if offline:
        import nltk

        missing = []
        for resource in ("tokenizers/punkt", "tokenizers/punkt_tab"):
            try:
                nltk.data.find(resource)
            except LookupError:
                missing.append(resource.split("/")[1])
        if missing:
            raise UserError(f"Task 'ifeval' needs nltk's {' and '.join(missing)} data, which this machine cannot "
                            f"download (offline) and nltk does not find ({', '.join(nltk.data.path[:3])}, ...). Fix: run "
                            f"`python -m nltk.downloader {' '.join(missing)}` where the internet is reachable and copy "
                            "the nltk_data folder here (or point NLTK_DATA at it), or drop ifeval from the tasks.")


def check_datasets(specs: list[tuple[str, int]], offline: bool | None = None, datasets_dir: str | None = None) -> list[tuple[str, str]]:
    """Every (repo, subset) the tasks need, after checking each can be built; raises UserError naming the
    first one that cannot."""
    import datasets

    offline = hub_offline() if offline is None else offline
    if any(name == "ifeval" for name, _ in specs):
        check_ifeval_checker(offline)
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
                if "scripts are no longer supported" in str(err):  # datasets >= 4 runs no loading script
                    where = (f"{f'its pinned revision {revision}' if revision else 'that copy'} is a loading-script dataset, "
                             "which datasets >= 4 cannot run; a parquet copy (the Hub's refs/convert/parquet) serves as a local copy")
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


def fresh_model_view(model_path: str, run_dir: Path) -> tuple[str, Path]:
    """(model name for lighteval, its sample-cache folder), both fresh under `run_dir`. lighteval 0.13 caches
    every prediction under `cache_dir / model_name / hash(model config)`: a folder's absolute path discards
    cache_dir, so the cache would land inside the model folder, and the hash ignores the weights, so a
    folder retrained in place would be scored with the old model's cached answers. A folder is therefore
    shown to lighteval as a new folder of links to its files, and the cache starts empty each run."""
    cache = run_dir / "cache"
    view = run_dir / "model"
    for folder in (cache, view):
        shutil.rmtree(folder, ignore_errors=True)
    if not os.path.isdir(model_path):  # a Hub id: cached under cache/<owner>/<name>/
        return model_path, cache
    view.mkdir(parents=True)
    for item in Path(model_path).iterdir():
        if item.is_file():
            (view / item.name).symlink_to(item.resolve())
    return str(view), cache


def run_lighteval(model_path: str, specs: list[tuple[str, int]], output_dir: str, limit: int | None = None,
                  batch_size: int = 8, use_chat_template: bool | None = None, offline: bool | None = None,
                  datasets_dir: str | None = None, dtype: str = "bfloat16", max_length: int | None = None) -> dict:
    """Check the datasets, then evaluate `model_path` on `specs` with lighteval's Pipeline (transformers
    backend; `dtype` on a GPU, float32 on a CPU-only machine). `max_length` caps prompt + generation in
    tokens (the paper's runs: 2048; None: the model's own). Returns {our name: {metric: value}}."""
    offline = hub_offline() if offline is None else offline
    check_datasets(specs, offline, datasets_dir)

    import torch

    import_lighteval()
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and dtype != "float32":
        print(f"lighteval: no GPU, so float32 instead of {dtype} (bf16 on a CPU is slow and rounds differently); "
              "the paper's numbers were measured in bf16 on GPUs", file=sys.stderr)
        dtype = "float32"
    options = {} if use_chat_template is None else {"override_chat_template": use_chat_template}  # None: lighteval decides
    if max_length is not None:
        options["max_length"] = max_length
    model_name, cache = fresh_model_view(model_path, Path(output_dir) / "lighteval")
    config = TransformersModelConfig(model_name=model_name, batch_size=batch_size, dtype=dtype, device=device,
                                     cache_dir=str(cache), **options)
    params = PipelineParameters(launcher_type=ParallelismManager.NONE, custom_tasks_directory=str(CUSTOM_TASKS),
                                max_samples=limit)
    tracker = EvaluationTracker(output_dir=str(Path(output_dir) / "lighteval"), save_details=True)
    print(f"lighteval: {task_string(specs)} on {model_path}", file=sys.stderr)
    grad_enabled = torch.is_grad_enabled()
    try:
        with offline_mode(offline), suite_registry(datasets_dir), hash_strings(), \
                contextlib.redirect_stdout(sys.stderr):
            pipeline = Pipeline(tasks=task_string(specs), pipeline_parameters=params, evaluation_tracker=tracker,
                                model_config=config)
            pipeline.evaluate()
            pipeline.save_and_push_results()
            results = pipeline.get_results()["results"]
    finally:
        torch.set_grad_enabled(grad_enabled)  # lighteval's model switches autograd off for the whole process
    return collect(results, specs)
