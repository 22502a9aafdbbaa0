"""`smollm2 upload DIR --repo-id ID [--dry-run]`: write a model card and upload a run's folder to the Hub.

What is sent is built once, in a staging folder: the model's files (no intermediate checkpoints, no optimiser
state, no pickled training arguments), a secret-free `resolved_config.yaml`, the eval JSON and loss plot,
and README.md (the card). `--dry-run` keeps that folder and lists it; a real upload sends that same folder
with `HfApi.upload_folder`. The token is read from --token / HF_TOKEN / `hf auth login`, passed only to
`HfApi`, never printed, and the upload refuses a staging folder in which it appears.

`smollm2 export gguf` lives in gguf_export.py (re-exported here for the CLI table).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from smollm2_recipes.errors import UserError
from smollm2_recipes.model_card import RESOLVED_CONFIG, build_card, collect, sanitise
from smollm2_recipes.runkit.parsing import ArgumentParser

# Never uploaded: intermediate checkpoints, optimiser/scheduler/RNG state, pickled TrainingArguments (which
# can hold a hub token), TensorBoard event folders, temporary files.
EXCLUDED_DIRS = ("checkpoint-", "runs", ".cache", "__pycache__", ".git")
EXCLUDED_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "README.md", RESOLVED_CONFIG)
EXCLUDED_SUFFIXES = (".tmp", ".lock", ".pth")


def _included(rel: Path) -> bool:
    if any(part.startswith(EXCLUDED_DIRS) or part.startswith(".") for part in rel.parts[:-1]):
        return False
    return rel.name not in EXCLUDED_FILES and not rel.name.endswith(EXCLUDED_SUFFIXES) and not rel.name.startswith(".")


def _place(src: Path, dst: Path) -> None:
    """Hard-link (model weights can be GBs), or copy where the filesystem cannot link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_upload(model_dir: Path, staging: Path, repo_id: str, stage: str | None, license: str, secrets: tuple[str, ...],
                 base_model: str | None = None) -> list[Path]:
    """Fill the empty folder `staging` with exactly what the upload sends; return the relative paths."""
    info = collect(model_dir, stage=stage)
    if base_model:  # e.g. DPO from a local SFT folder that was itself published as base_model
        info.base_model, info.base_model_local = base_model, None
    for src in sorted(model_dir.rglob("*")):
        rel = src.relative_to(model_dir)
        if src.is_file() and _included(rel):
            _place(src, staging / rel)
    if info.config:
        (staging / RESOLVED_CONFIG).write_text(yaml.safe_dump(sanitise(info.config, secrets), sort_keys=True, allow_unicode=True))
    build_card(info, repo_id, license=license, secrets=secrets).save(staging / "README.md")
    files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    for secret in secrets:
        if not secret:
            continue
        needle = secret.encode()
        for rel in files:
            with open(staging / rel, "rb") as f:
                if needle in f.read():
                    raise UserError(f"The Hub token appears in '{rel}' inside {model_dir}: remove it from that file; nothing was uploaded.")
    return files


def _validate_repo_id(repo_id: str, flag: str = "--repo-id") -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"{flag} '{repo_id}' is not a valid Hub repository id ({err}). Use 'namespace/name' with letters, digits, '-', '_', '.'.") from err
    if "/" not in repo_id:
        raise UserError(f"{flag} '{repo_id}' has no namespace: use 'your-username/{repo_id}' or 'your-org/{repo_id}'.")


def _replace_folder(new: Path, final: Path) -> None:
    """Swap a freshly built staging folder into place (a previous dry-run's folder is replaced whole)."""
    if final.exists():
        if not (final / "README.md").is_file():
            raise UserError(f"'{final}' exists and is not a previous dry-run folder (no README.md): choose another --staging-dir.")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(new, final)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def upload(folder: Path, repo_id: str, token: str, private: bool, commit_message: str) -> str:
    """Create the repo if needed and upload `folder`; network failures become one clear UserError."""
    from huggingface_hub import HfApi, constants

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", commit_message=commit_message)
    except Exception as err:  # the network boundary: connection, auth, HTTP and offline-mode errors alike
        reason = _redact(f"{type(err).__name__}: {err}".splitlines()[0], (token,))
        raise UserError(f"Could not upload to {constants.ENDPOINT}/{repo_id}: {reason}. Check the network and your token "
                        "(`hf auth whoami`); try --dry-run to see what would be sent.") from None
    return getattr(commit, "commit_url", None) or f"{constants.ENDPOINT}/{repo_id}"


def upload_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 upload", description="Write a model card for a run's folder and upload it to the Hub.")
    parser.add_argument("model_dir", help="a model folder written by a stage (config.json, safetensors, tokenizer, resolved_config.yaml)")
    parser.add_argument("--repo-id", required=True, help="namespace/name on the Hub")
    parser.add_argument("--dry-run", action="store_true", help="write exactly what would be sent into --staging-dir and list it; send nothing")
    parser.add_argument("--staging-dir", help="where --dry-run writes (default: DIR.hub-upload next to DIR)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`); never printed or saved")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--stage", choices=("pretrain", "context_extension", "sft", "dpo", "average"), help="the stage that made the model (default: read from resolved_config.yaml)")
    parser.add_argument("--base-model", help="Hub id of the model this one was trained from, when the recipe names a local folder")
    parser.add_argument("--license", default="apache-2.0", help="license id for the card (default apache-2.0, SmolLM2's)")
    parser.add_argument("--commit-message", default="Upload model trained with smollm2-recipes")
    args = parser.parse_args(argv)

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"'{model_dir}' is not a model folder (no config.json): pass the output_dir of a finished stage.")
    _validate_repo_id(args.repo_id)
    if args.base_model:
        _validate_repo_id(args.base_model, "--base-model")
    from huggingface_hub import get_token

    token = args.token or get_token()  # get_token reads HF_TOKEN, then the saved login
    if not args.dry_run and not token:
        raise UserError("No Hub token: run `hf auth login`, set HF_TOKEN, or pass --token (or use --dry-run).")
    secrets = tuple(t for t in {token, os.environ.get("HF_TOKEN"), args.token} if t)

    if args.dry_run:
        final = Path(args.staging_dir) if args.staging_dir else model_dir.with_name(model_dir.name + ".hub-upload")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            files = stage_upload(model_dir, tmp, args.repo_id, args.stage, args.license, secrets, args.base_model)
            _replace_folder(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"dry run: these {len(files)} files would be uploaded to {args.repo_id} (nothing was sent); they are in {final}:")
        for rel in files:
            print(f"  {rel}  ({(final / rel).stat().st_size:,} bytes)")
        return 0

    with tempfile.TemporaryDirectory(prefix=".hub-upload-", dir=model_dir.parent) as tmp:
        files = stage_upload(model_dir, Path(tmp), args.repo_id, args.stage, args.license, secrets, args.base_model)
        print(f"uploading {len(files)} files from {model_dir} to {args.repo_id} ...")
        url = upload(Path(tmp), args.repo_id, token, args.private, args.commit_message)
    print(f"uploaded: {url}")
    return 0
