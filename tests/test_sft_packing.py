"""Token-level invariants of an SFT batch built by the real `smollm2 sft` code path (TRL SFTTrainer):
assistant-only labels with the end-of-turn label kept although pad = eos, one BOS, and packed examples
that restart their position ids and never attend to each other."""

import json

import pytest
import torch

from smollm2_recipes import recipe_parsing
from smollm2_recipes.errors import UserError

ROWS = [
    {"messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "2 + 3 = 5.\nThe answer is 5."}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]},
    {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue"}]},
]


def _trainer(tmp_path, model_dir, *extra):
    from smollm2_recipes.post_training.sft import CONFIG_TYPES, build_trainer

    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    argv = ["recipes/smollm2/tiny/sft.yaml", "--model_name_or_path", model_dir, "--output_dir", str(tmp_path / "out"),
            "--dataset_mixture", json.dumps([{"path": str(data)}]), "--max_length", "256", "--bf16", "false", *extra]
    args, model_args, data_args, _ = recipe_parsing.parse(CONFIG_TYPES, argv)
    return build_trainer(args, model_args, data_args)


def _segments(position_ids):
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return [(a, b) for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_labels_positions_and_no_cross_talk(tmp_path, micro_model_dir, attn):
    trainer, tok = _trainer(tmp_path, micro_model_dir, "--attn_implementation", attn)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels, pos = batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), batch["position_ids"][0].tolist()
    assert "attention_mask" not in batch  # padding-free: the boundaries are in the position ids
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id == tok.eos_token_id == im_end  # the pad = eos case

    segments = _segments(pos)
    assert len(segments) == len(ROWS)  # all three examples packed in one row (best-fit decreasing)
    texts = set()
    for a, b in segments:
        assert pos[a:b] == list(range(b - a))  # each example restarts its positions
        seg_ids, seg_labels = ids[a:b], labels[a:b]
        assert seg_ids[0] == im_start and seg_ids[1] != im_start  # exactly one BOS (<|im_start|>), not doubled
        trained = tok.decode([t for t, l in zip(seg_ids, seg_labels) if l != -100])
        texts.add(trained)
        # labels equal inputs where trained (the causal shift happens inside the model)
        assert all(l in (-100, t) for t, l in zip(seg_ids, seg_labels))
        # every <|im_end|> closing an assistant turn is trained, the ones closing system/user turns are not
        ends = [i for i, t in enumerate(seg_ids) if t == im_end]
        trained_ends = [i for i in ends if seg_labels[i] == im_end]
        assert len(trained_ends) == trained.count("<|im_end|>") >= 1
        assert seg_labels[ends[0]] == -100  # end of the system turn
    assert texts == {"2 + 3 = 5.\nThe answer is 5.<|im_end|>", "Hello!<|im_end|>Goodbye.<|im_end|>", "Blue<|im_end|>"}

    # No cross-talk: each packed example's logits equal those of the example run alone.
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for a, b in segments:
            alone = model(input_ids=batch["input_ids"][:, a:b]).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-4, rtol=1e-4)


def test_unpacked_batch_keeps_eos_label_with_pad_equal_eos(tmp_path, micro_model_dir):
    trainer, tok = _trainer(tmp_path, micro_model_dir, "--packing", "false", "--per_device_train_batch_size", "3")
    batch = next(iter(trainer.get_train_dataloader()))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), batch["attention_mask"].tolist()):
        real = sum(mask)
        assert all(l == -100 for l in labels[real:])  # padding (also id = eos) is never a label
        last_trained = max(i for i, l in enumerate(labels) if l != -100)
        assert labels[last_trained] == im_end  # but the real end-of-turn is


def test_wrapped_packing_and_unknown_attention_are_refused(tmp_path, micro_model_dir):
    with pytest.raises(UserError, match="wrapped"):
        _trainer(tmp_path, micro_model_dir, "--packing_strategy", "wrapped")
    from smollm2_recipes.post_training import common
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(micro_model_dir)
    model.config._attn_implementation = "paged|sdpa"
    args = type("A", (), {"packing": True, "packing_strategy": "bfd"})()
    with pytest.raises(UserError, match="cannot keep packed examples apart"):
        common.check_packed_attention(model, args)
