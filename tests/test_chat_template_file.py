"""chat_templates/smollm2.jinja must render byte-identically to the embedded tokenizer's own template."""

from pathlib import Path

import pytest

TEMPLATE = Path(__file__).parent.parent / "chat_templates" / "smollm2.jinja"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "and x3?\n\ntabs\tand ünïcode ✓"}],
    [{"role": "user", "content": ""}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_template_file_renders_like_the_tokenizer(instruct_model_path, conversation, generation_prompt):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(instruct_model_path)
    ours = tok.apply_chat_template(conversation, chat_template=TEMPLATE.read_text(), tokenize=False, add_generation_prompt=generation_prompt)
    theirs = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
    assert ours == theirs
    assert ours.encode() == theirs.encode()
