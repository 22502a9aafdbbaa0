"""A folder of checkpoints: find them, place each on the training axis (tokens seen, else step), and
plot every metric against it, one PNG per metric, the way the paper's ablations are read."""

from __future__ import annotations

import json
import re
from pathlib import Path

from smollm2_recipes.evaluation.results import BOOKKEEPING

STEP_RE = re.compile(r"(\d+)$")
SEQ_KEYS = ("max_length", "seq_length", "sequence_length", "block_size", "max_seq_length")


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def find_checkpoints(folder: str | Path, inside_model_folder: bool = False) -> list[Path]:
    """Sub-folders that are models (`checkpoint-*`, or any with a config.json), in training order; [] when
    `folder` has none, or is itself a model (a training output folder) unless `inside_model_folder`."""
    folder = Path(folder)
    if not folder.is_dir() or (is_model_folder(folder) and not inside_model_folder):
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and (is_model_folder(p) or p.name.startswith("checkpoint-"))]
    return sorted(found, key=lambda p: (training_position(p)["step"] is None, training_position(p)["step"] or 0, p.name))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tokens_per_step(folder: Path) -> int | None:
    """Tokens per optimiser step from the resolved config the training run saved next to the checkpoint."""
    import yaml

    for candidate in (folder / "resolved_config.yaml", folder.parent / "resolved_config.yaml"):
        if candidate.is_file():
            try:
                cfg = yaml.safe_load(candidate.read_text()) or {}
            except yaml.YAMLError:
                return None
            flat = {k: v for section in cfg.values() if isinstance(section, dict) for k, v in section.items()} | cfg
            if flat.get("tokens_per_step"):
                return int(flat["tokens_per_step"])
            seq = next((flat[k] for k in SEQ_KEYS if isinstance(flat.get(k), int)), None)
            batch = flat.get("per_device_train_batch_size")
            if seq and isinstance(batch, int):
                return seq * batch * int(flat.get("gradient_accumulation_steps") or 1) * int(flat.get("world_size") or 1)
    return None


def training_position(folder: str | Path) -> dict:
    """{"step", "tokens"} of a checkpoint: tokens from trainer_state.json (num_input_tokens_seen, or the
    last logged token count), else step x tokens per step from the saved config; None where unknown."""
    folder = Path(folder)
    state = _read_json(folder / "trainer_state.json")
    step = state.get("global_step")
    if step is None:
        match = STEP_RE.search(folder.name)
        step = int(match.group(1)) if match else None
    tokens = state.get("num_input_tokens_seen") or None
    if not tokens:
        for entry in reversed(state.get("log_history", [])):
            value = entry.get("num_input_tokens_seen") or entry.get("tokens") or entry.get("train_tokens")
            if value:
                tokens = value
                break
    if not tokens and step is not None:
        per_step = _tokens_per_step(folder)
        tokens = step * per_step if per_step else None
    return {"step": step, "tokens": int(tokens) if tokens else None}


def plot_curves(checkpoints: list[dict], output_dir: str | Path) -> list[Path]:
    """One PNG per (task, metric) under output_dir/curves/: the metric against training tokens (or steps
    when some checkpoint's token count is unknown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_tokens = all(c.get("tokens") for c in checkpoints)
    xkey = "tokens" if use_tokens else "step"
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for ck in checkpoints:
        x = ck.get(xkey)
        if x is None:
            continue
        for task, metrics in ck["tasks"].items():
            for metric, value in metrics.items():
                if metric not in BOOKKEEPING and value is not None:
                    series.setdefault((task, metric), []).append((x, value))
    out = Path(output_dir) / "curves"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for (task, metric), points in sorted(series.items()):
        points.sort()
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_xlabel("training tokens" if use_tokens else "training step")
        ax.set_ylabel(metric)
        ax.set_title(f"{task}: {metric}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}_{metric}")
        path = out / f"{safe}.png"
        tmp = path.with_name(f".{path.stem}.tmp.png")  # written aside, then renamed: never half a PNG
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths
