"""The chat / preference mixture: local files, generated sets, weights, handbook's forms, and bad rows
dropped with a counted reason (never a crash later in a collator)."""

import json

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.post_training.data import ChatDataArguments, load_mixture, parse_mixture

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
BAD_CHAT = [
    ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "y"}]}, "empty content"),
    ({"messages": [{"role": "user", "content": "x"}]}, "conversation does not end with the assistant"),
    ({"text": "no messages here"}, "missing column 'messages'"),
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_bad_chat_rows_are_dropped_and_counted(tmp_path):
    rows = [GOOD] * 3 + [r for r, _ in BAD_CHAT]
    args = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "c.jsonl", rows)}])
    train, _, report = load_mixture(args, "chat", seed=0, report_dir=str(tmp_path))
    assert len(train) == 3 and report["kept"] == 3
    assert report["dropped"] == {reason: 1 for _, reason in BAD_CHAT}
    assert json.loads((tmp_path / "data_report.json").read_text())["dropped"] == report["dropped"]


def test_sharegpt_rows_are_converted(tmp_path):
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    args = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "s.jsonl", [row])}])
    train, _, _ = load_mixture(args, "chat", seed=0)
    assert train[0]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]


def test_bad_preference_rows_are_dropped_and_counted(tmp_path, instruct_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(instruct_model_path)
    user = [{"role": "user", "content": "Q?"}]
    ultrafeedback_style = {"prompt": "Q?", "chosen": user + [{"role": "assistant", "content": "good"}],
                           "rejected": user + [{"role": "assistant", "content": "bad"}]}
    rows = [
        ultrafeedback_style,
        {"prompt": "Q?", "chosen": "good", "rejected": "bad"},  # plain strings
        {"prompt": "Q?", "chosen": "same", "rejected": "same"},
        {"prompt": "Q?", "chosen": "only chosen"},
        {"prompt": "word " * 300, "chosen": "a", "rejected": "b"},
        {"prompt": user, "chosen": [{"role": "user", "content": "not an answer"}], "rejected": [{"role": "assistant", "content": "b"}]},
    ]
    args = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "p.jsonl", rows)}])
    train, _, report = load_mixture(args, "preference", seed=0, tokenizer=tok, max_prompt_length=100)
    assert report["dropped"] == {"chosen == rejected": 1, "missing column 'rejected'": 1, "prompt longer than 100 tokens": 1,
                                 "conversation does not end with the assistant": 1}
    assert len(train) == 2
    for row in train:  # normalised to conversational prompt / chosen / rejected
        assert row["prompt"] == user and row["chosen"][0]["content"] == "good" and row["rejected"][0]["content"] == "bad"


def test_weights_subsample_and_repeat(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [GOOD] * 10)
    args = ChatDataArguments(dataset_mixture=[{"path": a, "weight": 0.3}, {"path": "arith:sft", "num_samples": 4, "weight": 2}])
    train, _, report = load_mixture(args, "chat", seed=0)
    assert [s["kept"] for s in report["sources"]] == [3, 8] and len(train) == 11


def test_a_one_row_dataset_is_accepted_with_a_warning(tmp_path, capsys):
    one = _jsonl(tmp_path / "one.jsonl", [GOOD])
    train, _, report = load_mixture(ChatDataArguments(dataset_mixture=[{"path": one}]), "chat", seed=0)
    assert len(train) == 1 and report["warning"] == "only 1 chat training row(s)"
    assert "warning: the chat mixture has only 1 training row(s)" in capsys.readouterr().err
    many = _jsonl(tmp_path / "many.jsonl", [GOOD] * 8)
    assert "warning" not in load_mixture(ChatDataArguments(dataset_mixture=[{"path": many}]), "chat", seed=0)[2]


def test_handbook_mixture_forms_and_test_split(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [GOOD] * 20)
    args = ChatDataArguments(dataset_mixture={"datasets": [{"id": a, "columns": ["messages"], "weight": 1.0}], "seed": 3, "test_split_size": 5})
    train, eval_ds, _ = load_mixture(args, "chat", seed=0)
    assert (len(train), len(eval_ds)) == (15, 5)
    old = ChatDataArguments(dataset_mixture={"some/hub-id": 0.5})
    assert [(s.name, s.weight) for s in parse_mixture(old)[0]] == [("some/hub-id", 0.5)]


@pytest.mark.parametrize("mixture,match", [
    ([{"path": "missing.jsonl"}], "does not exist"),
    ([{"id": "x", "wieght": 1}], "Unknown key 'wieght'"),
    ([{"path": "arith:nope"}], "Unknown generated source"),
    ([{"path": "arith:sft", "weight": -1}], "weight of 'arith:sft' must be a number > 0"),
])
def test_bad_mixtures_fail_with_one_clear_message(mixture, match):
    with pytest.raises(UserError, match=match):
        load_mixture(ChatDataArguments(dataset_mixture=mixture), "chat", seed=0)


@pytest.mark.parametrize("source,match", [
    ({"path": "arith:onpolicy", "temperature": 0, "samples_per_prompt": 2}, "greedy. gives one answer per problem: set samples_per_prompt to 1, not 2"),
    ({"path": "arith:onpolicy", "temperature": -0.5}, "temperature must be a number >= 0 .0: the greedy answer., got -0.5"),
    ({"path": "arith:onpolicy", "max_new_tokens": 0}, "max_new_tokens must be an integer >= 1, got 0"),
    ({"path": "arith:onpolicy", "reference_fallback": "no"}, "reference_fallback must be true or false, got 'no'"),
    ({"path": "arith:sft", "temperature": 0.5}, "temperature: options of the arith:onpolicy source only, not of 'arith:sft'"),
])
def test_onpolicy_options_are_checked_when_the_recipe_is_read(source, match):
    # parse_mixture reads the recipe only: the mistake is named before any model is loaded
    with pytest.raises(UserError, match=match):
        parse_mixture(ChatDataArguments(dataset_mixture=[source]))


def test_onpolicy_options_left_out_take_the_sampling_defaults():
    # samples_per_prompt 2 without a temperature samples at the default 0.8: no greedy conflict
    [source], _, _ = parse_mixture(ChatDataArguments(dataset_mixture=[{"path": "arith:onpolicy", "samples_per_prompt": 2}]))
    assert source.options == {"samples_per_prompt": 2}


def test_missing_columns_and_all_bad_rows_are_user_errors(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{"text": "a"}])
    with pytest.raises(UserError, match=r"has no column\(s\) \['messages'\]"):
        load_mixture(ChatDataArguments(dataset_mixture=[{"path": path, "columns": ["messages"]}]), "chat", seed=0)
    with pytest.raises(UserError, match="Every row of the chat mixture was dropped"):
        load_mixture(ChatDataArguments(dataset_mixture=[{"path": path}]), "chat", seed=0)


def _humaneval_prompt(i: int) -> str:
    import gzip

    from smollm2_recipes import assets

    with gzip.open(assets.resolve("embedded:humaneval"), "rt") as f:
        return [json.loads(line) for line in f][i]["prompt"]


def test_decontamination_removes_a_planted_humaneval_prompt_and_counts_it(tmp_path, capsys):
    planted = {"messages": [{"role": "user", "content": "Complete this:\n" + _humaneval_prompt(0)},
                            {"role": "assistant", "content": "Here it is."}]}
    near = {"messages": [{"role": "user", "content": "def has_close_elements(numbers, threshold): what does it do?"},
                         {"role": "assistant", "content": "It checks whether two numbers are closer than the threshold."}]}
    rows = [GOOD] * 5 + [planted, near]
    args = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "c.jsonl", rows)}], decontaminate=["humaneval"])
    train, _, report = load_mixture(args, "chat", seed=0, report_dir=str(tmp_path))
    assert len(train) == 6 and planted not in train.to_list() and near in train.to_list()  # a few shared words are not a 13-gram
    assert report["decontaminated"] == {"humaneval": 1}
    assert json.loads((tmp_path / "data_report.json").read_text())["decontaminated"] == {"humaneval": 1}
    assert "decontamination (13-gram overlap with humaneval) removed 1 chat row(s)" in capsys.readouterr().err
    off = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "c.jsonl", rows)}])
    assert len(load_mixture(off, "chat", seed=0)[0]) == 7  # off by default: nothing removed


def test_decontamination_of_preference_rows_reads_the_prompt(tmp_path):
    rows = [{"prompt": "Q?", "chosen": "good", "rejected": "bad"},
            {"prompt": _humaneval_prompt(3), "chosen": "good", "rejected": "bad"}]
    args = ChatDataArguments(dataset_mixture=[{"path": _jsonl(tmp_path / "p.jsonl", rows)}], decontaminate=["humaneval"])
    train, _, report = load_mixture(args, "preference", seed=0)
    assert len(train) == 1 and train[0]["prompt"][0]["content"] == "Q?" and report["decontaminated"] == {"humaneval": 1}


def test_bad_test_split_size_and_decontaminate_settings_are_one_line(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [GOOD] * 4)
    with pytest.raises(UserError, match="test_split_size 10 must be a fraction in \\(0, 1\\) or a row count below the 4"):
        load_mixture(ChatDataArguments(dataset_mixture={"datasets": [{"path": a}], "test_split_size": 10}), "chat", seed=0)
    with pytest.raises(UserError, match="decontaminate_ngram must be an integer >= 1"):
        ChatDataArguments(dataset_name=a, decontaminate=["humaneval"], decontaminate_ngram=0)
    with pytest.raises(UserError, match="decontaminate: unknown benchmark 'nope'; use humaneval"):
        ChatDataArguments(dataset_mixture=[{"path": a}], decontaminate=["nope"])
