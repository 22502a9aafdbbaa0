"""chat_templates/smollm2_generation.jinja: the same text as smollm2.jinja, plus {% generation %} markers
that give TRL's assistant_only_loss a mask covering each assistant answer and its <|im_end|>."""

from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PLAIN = (ROOT / "chat_templates" / "smollm2.jinja").read_text()
MARKED = (ROOT / "chat_templates" / "smollm2_generation.jinja").read_text()
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!\nHow can I help?"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "ünïcode ✓\ttab"}, {"role": "assistant", "content": "c"}],
    [{"role": "user", "content": "only a question"}],
]


@pytest.fixture(scope="module")
def tokenizer(instruct_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(instruct_model_path)


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_marked_template_renders_byte_identical(tokenizer, conversation, generation_prompt):
    plain = tokenizer.apply_chat_template(conversation, chat_template=PLAIN, tokenize=False, add_generation_prompt=generation_prompt)
    marked = tokenizer.apply_chat_template(conversation, chat_template=MARKED, tokenize=False, add_generation_prompt=generation_prompt)
    assert marked.encode() == plain.encode()


def test_assistant_mask_covers_answers_and_end_of_turn(tokenizer):
    conversation = CONVERSATIONS[2]
    out = tokenizer.apply_chat_template(conversation, chat_template=MARKED, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = [i for i, m in zip(ids, mask) if m]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # exactly the two answers, each followed by its end-of-turn token (so the model learns to stop)
    assert tokenizer.decode(trained) == "b<|im_end|>c<|im_end|>"
    assert trained.count(im_end) == 2
    assert mask[-1] == 0  # the newline after the last <|im_end|> is not trained


def test_saved_inference_template_drops_only_the_markers(tokenizer):
    from smollm2_recipes.post_training.common import inference_template

    stripped = inference_template(MARKED)
    assert "{% generation %}" not in stripped and "endgeneration" not in stripped
    for conv in CONVERSATIONS:
        ours = tokenizer.apply_chat_template(conv, chat_template=stripped, tokenize=False, add_generation_prompt=True)
        assert ours == tokenizer.apply_chat_template(conv, chat_template=PLAIN, tokenize=False, add_generation_prompt=True)
