"""The paper's lighteval tasks (smollm2_recipes/evaluation/smollm2_tasks.py) against their public definition:
huggingface/smollm text/evaluation/smollm2/tasks.py and the lighteval prompt functions it used (commit
ea46419a, lighteval/tasks/default_prompts.py). Each prompt is rendered on a row written here in the
dataset's schema, and compared with the strings those definitions produce; then through lighteval 0.13's
own PromptManager, which builds what the model reads."""

from pathlib import Path

import pytest

pytest.importorskip("lighteval")

from lighteval.models.model_output import ModelResponse  # noqa: E402
from lighteval.tasks.prompt_manager import PromptManager  # noqa: E402
from lighteval.tasks.requests import Doc  # noqa: E402

from smollm2_recipes.evaluation import smollm2_tasks as tasks  # noqa: E402

MODULE = Path(tasks.__file__)
CONFIGS = {config.name: config for config in tasks.TASKS_TABLE}

# the smollm file's task names (its TASKS_TABLE + BBH_TASKS; IFEval is lighteval's `extended|ifeval`)
BBH = ["boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
       "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
       "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
       "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
       "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
       "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
       "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
       "word_sorting"]
PAPER_NAMES = ["arc:easy", "arc:challenge", "openbook_qa", "hellaswag", "commonsense_qa", "winogrande", "piqa",
               "trivia_qa", "mmlu_pro", "gsm8k", *[f"bbh:{s}" for s in BBH], "ifeval"]

# name: (repo, subset, revision, evaluation splits, few-shot split, few-shot selection, metric names,
#        generation size, stop sequences), as the smollm file (and lighteval ea46419a for ifeval) set them
MC = ("acc_norm",)
EXPECTED = {
    "arc:easy": ("allenai/ai2_arc", "ARC-Easy", "210d026faf9955653af8916fad021475a3f00453", ("test",), None, None, MC, None, ()),
    "arc:challenge": ("allenai/ai2_arc", "ARC-Challenge", "210d026faf9955653af8916fad021475a3f00453", ("test",), None, None, MC, None, ()),
    "openbook_qa": ("allenai/openbookqa", "main", "388097ea7776314e93a529163e0fea805b8a6454", ("validation",), None, None, MC, None, ()),
    "hellaswag": ("Rowan/hellaswag", "default", "6002345709e0801764318f06bf06ce1e7d1a1fe3", ("validation",), None, None, MC, None, ()),
    "commonsense_qa": ("tau/commonsense_qa", "default", "94630fe30dad47192a8546eb75f094926d47e155", ("validation",), None, None, MC, None, ()),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "85ac5b5a3b7a930e22d590176e39460400d19e41", ("validation",), None, None, MC, None, ()),
    "piqa": ("ybisk/piqa", "plain_text", "2e8ac2dffd59bac8c3c6714948f4c551a0848bb0", ("validation",), None, None, MC, None, ()),
    "trivia_qa": ("mandarjoshi/trivia_qa", "rc.nocontext", "0f7faf33a3908546c6fd5b73a660e0f8ff173c2f", ("validation",), None,
                  "random_sampling_from_train", ("qem",), 20, ("Question:", "Question")),
    "mmlu_pro": ("TIGER-Lab/MMLU-Pro", "default", "3373e0b32277875b8db2aa555a333b78a08477ea", ("test",), "validation", None, MC, None, ()),
    "gsm8k": ("openai/gsm8k", "main", "e53f048856ff4f594e959d75785d2c2d37b678ee", ("test",), None,
              "random_sampling_from_train", ("qem",), 256, ("Question:", "Question")),
    **{f"bbh:{s}": ("lighteval/big_bench_hard", s, "80610173426f05e6f1448f047e2db4840a7dd899", ("train",), "train", None,
                    ("em",), None, ("Question:", "Question")) for s in BBH},
    "ifeval": ("google/IFEval", "default", None, ("train",), "train", "random_sampling",
               ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"),
               1280, ()),
}


def render(name: str, line: dict) -> Doc:
    config = CONFIGS["smollm2_" + name]
    return config.prompt_function(line, config.name)


def plain_text(doc: Doc) -> str:
    """What lighteval 0.13 sends a base model (no chat template) for this Doc."""
    return PromptManager(use_chat_template=False).prepare_prompt(doc)


def test_names_are_the_papers_behind_one_prefix():
    assert len(tasks.TASKS_TABLE) >= 10
    assert [c.name for c in tasks.TASKS_TABLE] == ["smollm2_" + n for n in PAPER_NAMES]
    assert len(BBH) == 27


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dataset_metric_and_generation_settings(name):
    config = CONFIGS["smollm2_" + name]
    repo, subset, revision, splits, fewshot_split, select, metrics, size, stop = EXPECTED[name]
    assert (config.hf_repo, config.hf_subset, config.hf_revision) == (repo, subset, revision)
    assert (tuple(config.evaluation_splits), config.few_shots_split, config.few_shots_select) == (splits, fewshot_split, select)
    assert tuple(name for m in config.metrics for name in ([m.metric_name] if isinstance(m.metric_name, str) else m.metric_name)) == metrics
    assert (config.generation_size, tuple(config.stop_sequence)) == (size, stop)


def test_hellaswag_prompt():
    line = {"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
            "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.",
                                         ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."],
            "label": "3"}
    doc = render("hellaswag", line)
    assert doc.query == ("Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman "
                         "wearing winter clothes smiles. Then ")
    assert doc.choices[0] == " , the man adds wax to the windshield and cuts it." and doc.gold_index == 3
    # WikiHow rows: " [title]" becomes ". ", other bracketed tags go, double spaces collapse
    wikihow = render("hellaswag", {"activity_label": "Home and Garden", "ctx_a": "[header] How to grow basil [title] Pick a sunny spot.",
                                   "ctx_b": "", "endings": ["[step] Water it daily.", "Sing to it."], "label": ""})
    assert wikihow.query == "Home and Garden: How to grow basil. Pick a sunny spot. "
    assert wikihow.choices == ["  Water it daily.", " Sing to it."] and wikihow.gold_index == -1
    assert plain_text(doc) == doc.query  # zero-shot: the query is the whole prompt


def test_arc_openbookqa_piqa_commonsenseqa_prompts():
    arc = render("arc:challenge", {"question": "Which gas do plants take in?", "choices": {"text": ["oxygen", "carbon dioxide", "helium"],
                                   "label": ["A", "B", "C"]}, "answerKey": "B"})
    assert (arc.query, arc.choices, arc.gold_index) == ("Question: Which gas do plants take in?\nAnswer:",
                                                         [" oxygen", " carbon dioxide", " helium"], 1)
    numbered = render("arc:easy", {"question": "q?", "choices": {"text": ["a", "b"], "label": ["1", "2"]}, "answerKey": "2"})
    assert numbered.gold_index == 1
    obqa = render("openbook_qa", {"question_stem": "The sun is responsible for", "choices": {"text": ["puppies learning new tricks",
                  "plants sprouting, blooming and wilting"], "label": ["A", "B"]}, "answerKey": "B"})
    assert (obqa.query, obqa.choices, obqa.gold_index) == ("The sun is responsible for",
                                                            [" puppies learning new tricks", " plants sprouting, blooming and wilting"], 1)
    piqa = render("piqa", {"goal": "How do I ready a guinea pig cage?", "sol1": "Use shredded paper.", "sol2": "Use jeans.", "label": 0})
    assert (piqa.query, piqa.choices, piqa.gold_index) == ("Question: How do I ready a guinea pig cage?\nAnswer:",
                                                            [" Use shredded paper.", " Use jeans."], 0)
    csqa = render("commonsense_qa", {"question": "Where would you keep a pen?", "choices": {"label": ["A", "B", "C", "D", "E"],
                  "text": ["desk drawer", "ocean", "sky", "volcano", "cloud"]}, "answerKey": "A"})
    assert (csqa.query, csqa.choices, csqa.gold_index) == ("Where would you keep a pen?",
                                                            [" desk drawer", " ocean", " sky", " volcano", " cloud"], 0)
    # ea46419a rendered CommonsenseQA (instruction "") as the bare question; so does lighteval 0.13 here
    assert plain_text(csqa) == "Where would you keep a pen?"


def test_winogrande_prompt_scores_the_rest_of_the_sentence():
    doc = render("winogrande", {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
                                "option1": "Sarah", "option2": "Maria", "answer": "1"})
    assert doc.query == "Sarah was a much better surgeon than Maria so "
    assert doc.choices == ["Sarah always got the harder cases.", "Maria always got the harder cases."] and doc.gold_index == 0


def test_mmlu_pro_is_lettered_multiple_choice():
    line = {"question": "What is 2 + 2?", "options": ["3", "4", "5", "22"], "answer": "B", "answer_index": 1,
            "category": "high_school_math", "src": "x"}
    doc = render("mmlu_pro", line)
    expected = ("The following are multiple choice questions (with answers) about high school math.\n\n"
                "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:")
    assert (doc.query, doc.choices, doc.gold_index) == (expected, ["A", "B", "C", "D"], 1)
    assert plain_text(doc) == expected  # the paper's prompt, byte for byte, through lighteval 0.13


def test_trivia_qa_gold_is_the_normalised_aliases():
    doc = render("trivia_qa", {"question": "Which Lloyd Webber musical premiered in the US in 1980?", "question_id": "tc_1",
                               "answer": {"aliases": ["Evita!", "Evita", "EVITA (musical)", "Jesus Christ"], "value": "Evita"}})
    assert doc.query == "Question: Which Lloyd Webber musical premiered in the US in 1980?\nAnswer:"
    # sorted: "EVITA (musical)", "Evita", "Evita!", "Jesus Christ"; "Evita!" starts with "Evita" and is dropped
    assert doc.choices == [["evita musical", "evita", "jesus christ"]] and doc.gold_index == 0
    assert doc.get_golds() == ["evita musical", "evita", "jesus christ"]


def test_gsm8k_prompt_and_its_five_shot_context():
    rows = [{"question": f"Tom has {n} apples and buys {n} more. How many?", "answer": f"He has {n}+{n}={2 * n}.\n#### {2 * n}"}
            for n in range(1, 7)]
    docs = [render("gsm8k", row) for row in rows]
    assert docs[0].query == "Question: Tom has 1 apples and buys 1 more. How many?\nAnswer:"
    assert docs[0].choices == [" He has 1+1=2.\n#### 2"] and docs[0].gold_index == 0
    target = docs[5]
    target.fewshot_samples = docs[:5]
    prompt = plain_text(target)
    shots = prompt.split("\n\n")
    assert len(shots) == 6 and shots[-1] == target.query
    assert shots[0] == "Question: Tom has 1 apples and buys 1 more. How many?\nAnswer: He has 1+1=2.\n#### 2"


def test_bbh_prompt():
    doc = render("bbh:boolean_expressions", {"input": "not ( True ) and ( True ) is", "target": "False"})
    assert (doc.query, doc.choices, doc.gold_index) == ("Question: not ( True ) and ( True ) is\nAnswer: ", ["False"], 0)


def test_bbh_three_shot_chat_turns_are_the_papers(instruct_model_path):
    """The instruct suite runs BBH 3-shot with the chat template: each example is a user turn (the query) and
    an assistant turn (the target), as ea46419a built them, then the question; lighteval 0.13 renders that."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(instruct_model_path)
    rows = [{"input": f"not ( {a} ) is", "target": str(not a)} for a in (True, False, True, False)]
    docs = [render("bbh:boolean_expressions", row) for row in rows]
    target = docs[3]
    target.fewshot_samples = docs[:3]
    turns = []
    for row in rows[:3]:
        turns += [{"role": "user", "content": f"Question: {row['input']}\nAnswer: "}, {"role": "assistant", "content": row["target"]}]
    turns.append({"role": "user", "content": "Question: not ( False ) is\nAnswer: "})
    expected = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert PromptManager(use_chat_template=True, tokenizer=tokenizer).prepare_prompt(target) == expected


def test_ifeval_prompt_carries_the_instructions():
    line = {"key": 1000, "prompt": "Write a haiku about rain. Do not use any commas.",
            "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    doc = render("ifeval", line)
    assert (doc.query, doc.choices, doc.gold_index) == (line["prompt"], [""], 0)
    assert doc.specific == {"instructions_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    assert plain_text(doc) == line["prompt"]
    assert tasks.mean_over_instructions([[True, False], [True], [False, False, True]]) == pytest.approx(3 / 6)


def test_ifeval_scores_strict_and_loose_with_lightevals_checks(monkeypatch):
    """The four IFEval accuracies from lighteval's own instruction checks (imported on first use). Its module
    fetches nltk's punkt data when imported; these two instructions need none, so the download (which this
    offline machine cannot make) is replaced by a refusal."""
    pytest.importorskip("langdetect")
    import nltk

    monkeypatch.setattr(nltk, "download", lambda *args, **kwargs: False)
    doc = render("ifeval", {"key": 1, "prompt": "Write about rain. Do not use any commas. Answer in lowercase only.",
                            "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
                            "kwargs": [{}, {}]})

    def score(text):
        return tasks.IFEVAL.sample_level_fn.compute(doc=doc, model_response=ModelResponse(text=[text]))

    assert score("rain falls softly on the roof") == {"prompt_level_strict_acc": 1, "inst_level_strict_acc": [True, True],
                                                      "prompt_level_loose_acc": 1, "inst_level_loose_acc": [True, True]}
    assert score("Rain falls, softly")["inst_level_strict_acc"] == [False, False]
    # loose scoring also tries the answer without its first line: the preamble alone breaks "lowercase"
    preamble = score("Sure!\nrain falls softly")
    assert (preamble["prompt_level_strict_acc"], preamble["inst_level_strict_acc"]) == (0, [True, False])
    assert (preamble["prompt_level_loose_acc"], preamble["inst_level_loose_acc"]) == (1, [True, True])


def test_acc_norm_does_not_count_the_leading_space():
    """The paper's `loglikelihood_acc_norm_nospace`: " a" (1 char) at -1.0 vs " bbb" (3 chars) at -2.5 picks
    " bbb" (-0.83 > -1.0); counting the space would pick " a" (-0.5 > -0.625)."""
    doc = Doc(query="q", choices=[" a", " bbb"], gold_index=1)
    response = ModelResponse(logprobs=[-1.0, -2.5], output_tokens=[[1], [2, 3]])
    assert tasks.ACC_NORM_NOSPACE.sample_level_fn.compute(doc=doc, model_response=response) == 1
    doc.gold_index = 0
    assert tasks.ACC_NORM_NOSPACE.sample_level_fn.compute(doc=doc, model_response=response) == 0


def test_quasi_exact_match_variants():
    gsm = render("gsm8k", {"question": "q", "answer": "3 + 4 = 7\n#### 1,007"})
    hit = ModelResponse(text=[" 1000 + 7 = 1007\n#### 1007"])
    assert tasks.QEM_GSM8K.sample_level_fn.compute(doc=gsm, model_response=hit) == 1
    assert tasks.QEM_GSM8K.sample_level_fn.compute(doc=gsm, model_response=ModelResponse(text=[" 1007"])) == 0  # no ####
    trivia = render("trivia_qa", {"question": "q", "answer": {"aliases": ["The Beatles", "Beatles"], "value": "The Beatles"}})
    assert tasks.QEM_TRIVIAQA.sample_level_fn.compute(doc=trivia, model_response=ModelResponse(text=[" The Beatles!"])) == 1
    assert tasks.QEM_TRIVIAQA.sample_level_fn.compute(doc=trivia, model_response=ModelResponse(text=[" Queen"])) == 0


def test_lightevals_registry_loads_the_file_and_finds_the_tasks():
    """The file as `lighteval ... --custom-tasks <file>` passes it: loaded from its path by lighteval's
    Registry, the task string resolved there (BBH and ARC as supersets)."""
    from lighteval.tasks.registry import Registry

    from smollm2_recipes.evaluation.lighteval_bridge import suite_registry

    module = Registry.create_custom_tasks_module(str(MODULE))
    assert [c.name for c in module.TASKS_TABLE] == list(CONFIGS)
    with suite_registry():
        registry = Registry(tasks="smollm2_arc|0,smollm2_bbh|3,smollm2_gsm8k|5,smollm2_ifeval|0", custom_tasks=str(MODULE))
    found = registry.task_to_configs
    assert sorted(found) == sorted(["smollm2_arc:easy", "smollm2_arc:challenge", "smollm2_gsm8k", "smollm2_ifeval",
                                    *[f"smollm2_bbh:{s}" for s in BBH]])
    assert {c.num_fewshots for k, cs in found.items() if k.startswith("smollm2_bbh:") for c in cs} == {3}
    assert found["smollm2_gsm8k"][0].num_fewshots == 5


@pytest.mark.slow
def test_no_name_collides_with_a_lighteval_task():
    """lighteval 0.13 refuses custom tasks named like its own (Registry.load_all_task_configs). Its full load
    needs the network (tiny_benchmarks), so each of its task modules is imported here on its own, the ones that
    cannot import offline skipped (they are named)."""
    import importlib

    import lighteval.tasks.tasks as builtin

    names, skipped = set(), []
    root = Path(list(builtin.__path__)[0])
    modules = [f"lighteval.tasks.tasks.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__"]
    modules += [f"lighteval.tasks.tasks.{d.name}.main" for d in root.iterdir() if (d / "main.py").is_file()]
    for module in modules:
        try:
            names |= {c.name for c in importlib.import_module(module).TASKS_TABLE}
        except Exception:
            skipped.append(module)
    assert {"hellaswag", "arc:easy", "piqa", "gsm8k", "winogrande", "mmlu_pro"} <= names  # the clash the prefix avoids
    assert not names & set(CONFIGS), names & set(CONFIGS)
    assert len(skipped) < 6, skipped
