"""The run at a glance: training loss, held-out loss per stage and learning rate against steps, with the stage
boundaries drawn, written next to the checkpoints."""

from __future__ import annotations

from pathlib import Path


def plot_training(log_history: list[dict], stage_ends: list[tuple[str, int]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    lr = [(h["step"], h["learning_rate"]) for h in log_history if "learning_rate" in h and "step" in h]
    evals: dict[str, list] = {}
    for h in log_history:
        for k, v in h.items():
            if k.startswith("eval_") and k.endswith("_loss"):
                evals.setdefault(k[len("eval_"):-len("_loss")] or "eval", []).append((h["step"], v))
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    if train:
        ax_loss.plot(*zip(*train), lw=1, label="train loss")
    for name, points in evals.items():
        ax_loss.plot(*zip(*sorted(points)), marker="o", ms=3, lw=1.2, label=f"held-out {name}")
    if lr:
        ax_lr.plot(*zip(*lr), color="tab:red", lw=1.2)
    start = 0
    for name, end in stage_ends:
        for ax in (ax_loss, ax_lr):
            ax.axvline(end, color="grey", ls="--", lw=0.8)
        ax_loss.text((start + end) / 2, 1.01, name, transform=ax_loss.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
        start = end
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8, loc="upper right")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimiser step")
    if title:
        fig.suptitle(title, y=0.995, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
