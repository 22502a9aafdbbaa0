"""Weight averaging. During training: SWA (uniform) or EMA through `torch.optim.swa_utils.AveragedModel`, kept
in fp32 on the CPU, updated every `averaging_every` steps (Hägele et al.: SWA every 5 steps). After training:
`smollm2 average CKPT... --output_dir DIR [--weights ...]` averages saved checkpoints into a normal model folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.loading import check_model_folder
from smollm2_recipes.runkit.parsing import ArgumentParser

AVERAGED_DIR = "averaged"


class Averager:
    def __init__(self, model, kind: str, every: int, start: int, ema_decay: float):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.kind, self.every, self.start = kind, max(1, every), start
        multi_avg_fn = get_ema_multi_avg_fn(ema_decay) if kind == "ema" else None  # None = SWA's uniform mean
        self.averaged = AveragedModel(model, device="cpu", multi_avg_fn=multi_avg_fn)
        self.averaged.module.float()

    def maybe_update(self, model, step: int) -> None:
        if step >= self.start and step % self.every == 0:
            self.averaged.update_parameters(model)

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        folder = Path(folder) / AVERAGED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.averaged.module.state_dict().items()}
        state = _drop_tied(self.averaged.module, state)
        save_file(state, folder / "averaged.safetensors", metadata={"n_averaged": str(self.n_averaged), "kind": self.kind})

    def load(self, folder: str | os.PathLike) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(folder) / AVERAGED_DIR / "averaged.safetensors"
        if not path.is_file():
            return  # the checkpoint predates averaging: start the average here
        self.averaged.module.load_state_dict(load_file(path), strict=False)
        with safe_open(path, "pt") as f:
            self.averaged.n_averaged.fill_(int(f.metadata()["n_averaged"]))

    def save_model_folder(self, output_dir: str | os.PathLike, tokenizer=None) -> Path | None:
        if self.n_averaged == 0:
            return None
        out = Path(output_dir) / AVERAGED_DIR
        self.averaged.module.save_pretrained(out)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out


def _drop_tied(module, state: dict) -> dict:
    """safetensors refuses shared tensors; tied embeddings are restored by the model itself."""
    if getattr(getattr(module, "config", None), "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    return state


def average_checkpoints(paths: list[str], output_dir: str, weights: list[float] | None = None) -> Path:
    """Weighted average of checkpoints of one shape, in fp32, saved as a normal model folder (+ tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smollm2_recipes.training.checkpoints import SHAPE_KEYS, read_config

    if len(paths) < 1:
        raise UserError("give at least one checkpoint to average.")
    weights = [1.0] * len(paths) if not weights else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise UserError(f"--weights has {len(weights)} values for {len(paths)} checkpoints; give one weight per checkpoint.")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"--weights {weights} must be non-negative with a positive sum.")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output_dir '{out}' is not empty; averaging never writes over an existing folder.")
    configs = [read_config(p) for p in paths]
    for p, c in zip(paths[1:], configs[1:]):
        diffs = [k for k in SHAPE_KEYS if c.get(k) != configs[0].get(k)]
        if diffs:
            raise UserError(f"'{p}' has another shape than '{paths[0]}' ({', '.join(f'{k}: {c.get(k)} vs {configs[0].get(k)}' for k in diffs)}): "
                            "only checkpoints of one model can be averaged.")
    total = sum(weights)
    model = AutoModelForCausalLM.from_pretrained(paths[0], dtype=torch.float32)
    avg = {k: v.detach().float() * (weights[0] / total) for k, v in model.state_dict().items()}
    for path, w in zip(paths[1:], weights[1:]):
        other = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
        for k in avg:
            avg[k] += other[k].float() * (w / total)
    model.load_state_dict(avg)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    try:
        AutoTokenizer.from_pretrained(paths[0]).save_pretrained(tmp)
    except (OSError, ValueError):
        pass  # a checkpoint without tokenizer files still averages into a usable model folder
    (tmp / "averaged_from.txt").write_text("".join(f"{w / total:.6f} {p}\n" for p, w in zip(paths, weights)))
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="smollm2 average", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint or model folders of one shape")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--weights", nargs="+", type=float, default=None, help="one weight per checkpoint (default: uniform)")
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        raise UserError(f"average needs at least two checkpoints, got {len(args.checkpoints)} ({args.checkpoints[0]}): "
                        "an average of one is a copy.")
    for p in args.checkpoints:
        if not Path(p).is_dir():
            raise UserError(f"checkpoint '{p}' does not exist.")
        check_model_folder(Path(p))
    out = average_checkpoints(args.checkpoints, args.output_dir, args.weights)
    print(f"averaged {len(args.checkpoints)} checkpoints into {out}")
    return 0
