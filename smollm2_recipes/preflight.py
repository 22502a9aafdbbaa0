"""Checks of the outside services a run depends on, done before anything is loaded or trained: the Hub
(a model or dataset id that must be reachable or cached; `push_to_hub`) and experiment trackers
(`report_to`). Each failure is one `UserError` line that names the value and the way out."""

from __future__ import annotations

import os

from smollm2_recipes.errors import UserError

OFFLINE_ALTERNATIVE = ("offline, use the CPU recipes in recipes/smollm2/tiny/ or an embedded: name "
                       "(embedded:SmolLM2-135M-Instruct, embedded:smollm2-tokenizer, embedded:corpus/NAME)")
# Data files and explicit paths are never Hub ids, even though "data/train.jsonl" would pass as one.
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".txt", ".arrow", ".gz", ".zst", ".yaml", ".yml", ".jinja")
# report_to name -> the pip package that provides it (transformers' integrations)
TRACKER_PACKAGES = {"wandb": "wandb", "comet_ml": "comet-ml", "mlflow": "mlflow", "neptune": "neptune",
                    "tensorboard": "tensorboard", "codecarbon": "codecarbon", "clearml": "clearml", "dvclive": "dvclive",
                    "swanlab": "swanlab", "trackio": "trackio", "dagshub": "dagshub", "azure_ml": "azureml-core",
                    "kubeflow": "kubeflow"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now rather than when huggingface_hub was imported."""
    from huggingface_hub import constants

    now = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    return constants.is_offline_mode() or now in {"1", "ON", "YES", "TRUE"}


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` or `name` as the Hub spells repository ids, and not a local path or data file."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or os.path.exists(name) or name.startswith((".", "/", "~")) or name.lower().endswith(_FILE_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _cached(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for repo_type in ("model", "dataset"):
        try:
            snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
            return True
        except (LocalEntryNotFoundError, OSError, ValueError):
            continue
    return False


def _reachable(repo_id: str) -> str | None:
    """None if the Hub answers for `repo_id` (a model or a dataset, gated counts), else why not."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    for repo_type in ("model", "dataset"):
        try:
            api.repo_info(repo_id, repo_type=repo_type, timeout=15)
            return None
        except GatedRepoError:
            return None
        except RepositoryNotFoundError:
            continue
        except Exception as err:  # any transport failure (DNS, proxy, timeout) means "not reachable"
            return f"the Hub could not be reached ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return "no model or dataset of that id exists on the Hub (or it is private: log in with `hf auth login`)"


def require_local_or_hub(name: str) -> None:
    """Stop with one line when `name` is neither an existing path nor a Hub id that is cached or reachable."""
    if not looks_like_hub_id(name):
        return  # a missing local path is reported by the stage that reads it, which knows what makes it
    if _cached(name):
        return
    why = "HF_HUB_OFFLINE is set" if hub_offline() else _reachable(name)
    if why is None:
        return
    raise UserError(f"'{name}' is not a local folder or file, and as a Hub id it is not in the local cache and "
                    f"{why}; {OFFLINE_ALTERNATIVE}.")


def check_report_to(report_to) -> None:
    """Every tracker named in `report_to` is installed (transformers would fail at Trainer creation)."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n for n in names if n not in ("none", "all")]
    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise UserError(f"report_to '{unknown[0]}' is not a tracker transformers knows; valid: none, all, "
                        f"{', '.join(INTEGRATION_TO_CALLBACK)}.")
    available = set(get_available_reporting_integrations())
    missing = [n for n in names if n not in available]
    if missing:
        packages = " ".join(TRACKER_PACKAGES.get(n, n) for n in missing)
        raise UserError(f"report_to '{', '.join(missing)}' needs {packages}, which is not installed: "
                        f".venv/bin/pip install {packages}, or set report_to: none (or tensorboard).")


def check_push_to_hub(args) -> None:
    """`push_to_hub: true` needs the Hub and a token now, not after hours of training."""
    if not getattr(args, "push_to_hub", False):
        return
    target = getattr(args, "hub_model_id", None) or os.path.basename(os.path.normpath(str(args.output_dir)))
    fix = "set push_to_hub: false and upload the finished folder later with `smollm2 upload`"
    if hub_offline():
        raise UserError(f"push_to_hub: true (to '{target}') but the Hub is switched off (HF_HUB_OFFLINE is set); {fix}.")
    from huggingface_hub import HfApi, get_token

    token = getattr(args, "hub_token", None) or get_token()
    if not token:
        raise UserError(f"push_to_hub: true (to '{target}') but no Hub token is set: run `hf auth login` or export HF_TOKEN; or {fix}.")
    try:
        HfApi().whoami(token=token)
    except Exception as err:  # transport failure or a rejected token: either way nothing could be pushed
        first = str(err).splitlines()[0] if str(err) else ""
        raise UserError(f"push_to_hub: true (to '{target}') but the Hub did not accept the token or could not be reached "
                        f"({type(err).__name__}: {first}); {fix}.") from None


def check_training_services(args) -> None:
    """The checks above for one parsed TrainingArguments (any stage)."""
    check_report_to(getattr(args, "report_to", None))
    check_push_to_hub(args)

