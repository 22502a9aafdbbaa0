"""The SmolLM2 paper's evaluation tasks as a lighteval custom-tasks module (a module-level TASKS_TABLE).

Source: huggingface/smollm, text/evaluation/smollm2/tasks.py (with smollm2_base.txt and
smollm2_instruct.txt), run on lighteval commit ea46419a; the prompt functions it borrowed from that
lighteval (lighteval/tasks/default_prompts.py: arc, openbookqa, winogrande, piqa_harness, triviaqa, gsm8k)
and its IFEval task (lighteval/tasks/extended/ifeval/main.py) are re-written here for lighteval 0.13 with
the same output: query, choices and gold index. Metrics, few-shot splits and selection, stop sequences,
generation sizes and dataset revisions are the ones that file sets.

Usable as it is:
    lighteval accelerate "model_name=HuggingFaceTB/SmolLM2-1.7B,dtype=bfloat16" \
        "smollm2_hellaswag|0,smollm2_arc|0" --custom-tasks smollm2_recipes/evaluation/smollm2_tasks.py

Deliberate differences, each forced by lighteval 0.13 (and each checked by tests/test_eval_smollm2_tasks.py):
- names carry a `smollm2_` prefix (`smollm2_hellaswag`, `smollm2_arc:easy`, `smollm2_bbh:navigate`...):
  lighteval 0.13 refuses a custom task named like one of its own, and hellaswag, arc:easy, arc:challenge,
  piqa, mmlu_pro, winogrande, gsm8k and ifeval are its own;
- MMLU-Pro, CommonsenseQA and IFEval Docs carry no `instruction`: lighteval 0.13 renders an instruction as
  its own paragraph ("\\n\\n"-joined, query stripped), so the paper's instruction would change the prompt; left
  out, the prompt sent is exactly the paper's query (the instruction was the query's own first line, or "");
- ARC is read from `allenai/ai2_arc`, the Hub's current name of the file's `ai2_arc` (the same repository,
  so the same pinned revision);
- without a chat template, lighteval 0.13 writes a few-shot example as `query + " " + gold.strip()`
  (ea46419a: `query + gold`): the same text for GSM8K's " answer" golds, one more space after BBH's
  "Answer: "; with the chat template (the instruct suite, where BBH runs) the turns are identical.
The smollm file marked HellaSwag, WinoGrande, PIQA, TriviaQA and BBH `trust_dataset=True` (loading scripts
at those revisions, which `datasets` >= 4 no longer runs); where a pinned revision has no data files, `smollm2
eval` says so before loading the model and a parquet copy passed with --datasets_dir serves instead.
This module imports lighteval and numpy only, so lighteval can load it from its path.
"""

from __future__ import annotations

import re
import string

import numpy as np
from lighteval.metrics.metrics import Metrics
from lighteval.metrics.metrics_sample import ExactMatches, LoglikelihoodAcc, SampleLevelComputation
from lighteval.metrics.normalizations import LogProbCharNorm, gsm8k_normalizer, harness_triviaqa_normalizer
from lighteval.metrics.utils.metric_utils import SampleLevelMetric, SampleLevelMetricGrouping
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod

PREFIX = "smollm2_"

# ---------------------------------------------------------------------------------------------------
# Metrics (ea46419a's Metrics.loglikelihood_acc_norm_nospace, quasi_exact_match_triviaqa,
# quasi_exact_match_gsm8k, exact_match and the IFEval grouping)

# log-probability / characters of the choice, the leading space not counted; reported as "acc_norm"
ACC_NORM_NOSPACE = SampleLevelMetric(
    metric_name="acc_norm", sample_level_fn=LoglikelihoodAcc(logprob_normalization=LogProbCharNorm(ignore_first_space=True)),
    category=SamplingMethod.LOGPROBS, corpus_level_fn=np.mean, higher_is_better=True)
# TriviaQA: the prediction lower-cased without punctuation against the (already normalised) aliases
QEM_TRIVIAQA = SampleLevelMetric(
    metric_name="qem", sample_level_fn=ExactMatches(strip_strings=True, normalize_pred=harness_triviaqa_normalizer),
    category=SamplingMethod.GENERATIVE, corpus_level_fn=np.mean, higher_is_better=True)
# GSM8K: the number after "####" in the prediction against the one in the reference solution
QEM_GSM8K = SampleLevelMetric(
    metric_name="qem", sample_level_fn=ExactMatches(strip_strings=True, normalize_pred=gsm8k_normalizer,
                                                    normalize_gold=gsm8k_normalizer),
    category=SamplingMethod.GENERATIVE, corpus_level_fn=np.mean, higher_is_better=True)
EXACT_MATCH = Metrics.exact_match.value  # "em", both sides stripped

IFEVAL_METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


class IFEvalChecks(SampleLevelComputation):
    """lighteval's own IFEval instruction checks, imported when the first answer is scored: their module
    needs `langdetect` and downloads nltk's punkt tokenizer when imported, which an offline machine
    cannot do, and the rest of this suite must load there."""

    def compute(self, doc: Doc, model_response, **kwargs) -> dict:
        from lighteval.tasks.tasks.ifeval.main import IFEvalMetrics

        return IFEvalMetrics().compute(doc=doc, model_response=model_response, **kwargs)


def mean_over_instructions(per_prompt: list[list[bool]]) -> float:
    """Instruction-level accuracy: every instruction of every prompt counts once."""
    flat = [ok for prompt in per_prompt for ok in prompt]
    return sum(flat) / len(flat)


IFEVAL = SampleLevelMetricGrouping(
    metric_name=list(IFEVAL_METRICS), higher_is_better=dict.fromkeys(IFEVAL_METRICS, True),
    category=SamplingMethod.GENERATIVE, sample_level_fn=IFEvalChecks(),
    corpus_level_fn={name: mean_over_instructions if name.startswith("inst") else np.mean for name in IFEVAL_METRICS})

# ---------------------------------------------------------------------------------------------------
# Prompt functions: line of the dataset -> Doc


def hellaswag_prompt(line, task_name: str = None):
    """ctx_a, then ctx_b capitalised, after "activity: "; WikiHow's bracketed artefacts removed."""

    def clean(text):
        text = text.replace(" [title]", ". ")
        text = re.sub("\\[.*?\\]", "", text)
        return text.replace("  ", " ")

    context = f"{line['ctx_a']} {line['ctx_b'].capitalize()} "
    return Doc(task_name=task_name, query=clean(line["activity_label"] + ": " + context),
               choices=[" " + clean(ending) for ending in line["endings"]],
               gold_index=int(line["label"]) if line["label"] != "" else -1)


def arc_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Question: {line['question']}\nAnswer:",
               choices=[f" {text}" for text in line["choices"]["text"]],
               gold_index=line["choices"]["label"].index(line["answerKey"]))


def openbookqa_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=line["question_stem"], choices=[f" {text}" for text in line["choices"]["text"]],
               gold_index="ABCDE".index(line["answerKey"].strip()))


def winogrande_prompt(line, task_name: str = None):
    """Partial scoring: the sentence up to the blank is the query; each option completes the rest."""
    query, rest = line["sentence"].split("_")
    rest = rest.strip()
    return Doc(task_name=task_name, query=query, choices=[f"{line['option1']} {rest}", f"{line['option2']} {rest}"],
               gold_index=int(line["answer"]) - 1 if line["answer"] != "" else -1)


def piqa_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Question: {line['goal']}\nAnswer:",
               choices=[f" {line['sol1']}", f" {line['sol2']}"], gold_index=int(line["label"]))


def commonsense_qa_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=line["question"], choices=[f" {text}" for text in line["choices"]["text"]],
               gold_index=line["choices"]["label"].index(line["answerKey"].strip()))


def trivia_qa_prompt(line, task_name: str = None):
    """One gold: the list of accepted aliases, sorted, without any alias another one is a prefix of (a
    prediction matching the longer one matches the shorter too), lower-cased, punctuation removed."""
    aliases = sorted(line["answer"]["aliases"])
    kept = aliases[:1]
    for alias in aliases[1:]:
        if not alias.startswith(kept[-1]):
            kept.append(alias)
    golds = [alias.lower().translate(str.maketrans("", "", string.punctuation)) for alias in kept]
    return Doc(task_name=task_name, query=f"Question: {line['question']}\nAnswer:", choices=[golds], gold_index=0)


def mmlu_pro_prompt(line, task_name: str = None):
    """Lettered multiple choice (MCF): the options listed A., B., ... and the letter scored."""
    letters = [chr(ord("A") + i) for i in range(len(line["options"]))]
    topic = line["category"].replace("_", " ")
    query = f"The following are multiple choice questions (with answers) about {topic}.\n\n{line['question']}\n"
    query += "".join(f"{letter}. {option}\n" for letter, option in zip(letters, line["options"])) + "Answer:"
    return Doc(task_name=task_name, query=query, choices=letters, gold_index=line["answer_index"])


def gsm8k_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Question: {line['question']}\nAnswer:", choices=[f" {line['answer']}"],
               gold_index=0)


def bbh_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query="Question: " + line["input"] + "\nAnswer: ", choices=[line["target"]],
               gold_index=0)


def ifeval_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=line["prompt"], choices=[""], gold_index=0,
               specific={"instructions_id_list": line["instruction_id_list"], "kwargs": line["kwargs"]})


# ---------------------------------------------------------------------------------------------------
# Tasks: name, dataset and revision, splits, metric, generation settings as in the smollm file

BBH_SUBSETS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)
STOP = ["Question:", "Question"]


def _task(name: str, **kwargs) -> LightevalTaskConfig:
    return LightevalTaskConfig(name=PREFIX + name, **kwargs)


TASKS_TABLE = [
    *[_task(f"arc:{subset.lower()}", prompt_function=arc_prompt, hf_repo="allenai/ai2_arc", hf_subset=f"ARC-{subset}",
            hf_revision="210d026faf9955653af8916fad021475a3f00453", evaluation_splits=["test"],
            metrics=[ACC_NORM_NOSPACE])
      for subset in ("Easy", "Challenge")],
    _task("openbook_qa", prompt_function=openbookqa_prompt, hf_repo="allenai/openbookqa", hf_subset="main",
          hf_revision="388097ea7776314e93a529163e0fea805b8a6454", metrics=[ACC_NORM_NOSPACE]),
    _task("hellaswag", prompt_function=hellaswag_prompt, hf_repo="Rowan/hellaswag", hf_subset="default",
          hf_revision="6002345709e0801764318f06bf06ce1e7d1a1fe3", metrics=[ACC_NORM_NOSPACE]),
    _task("commonsense_qa", prompt_function=commonsense_qa_prompt, hf_repo="tau/commonsense_qa", hf_subset="default",
          hf_revision="94630fe30dad47192a8546eb75f094926d47e155", metrics=[ACC_NORM_NOSPACE]),
    _task("winogrande", prompt_function=winogrande_prompt, hf_repo="allenai/winogrande", hf_subset="winogrande_xl",
          hf_revision="85ac5b5a3b7a930e22d590176e39460400d19e41", metrics=[ACC_NORM_NOSPACE]),
    _task("piqa", prompt_function=piqa_prompt, hf_repo="ybisk/piqa", hf_subset="plain_text",
          hf_revision="2e8ac2dffd59bac8c3c6714948f4c551a0848bb0", metrics=[ACC_NORM_NOSPACE]),
    _task("trivia_qa", prompt_function=trivia_qa_prompt, hf_repo="mandarjoshi/trivia_qa", hf_subset="rc.nocontext",
          hf_revision="0f7faf33a3908546c6fd5b73a660e0f8ff173c2f", hf_avail_splits=["train", "validation"],
          evaluation_splits=["validation"], metrics=[QEM_TRIVIAQA], generation_size=20, stop_sequence=STOP,
          few_shots_select="random_sampling_from_train"),
    _task("mmlu_pro", prompt_function=mmlu_pro_prompt, hf_repo="TIGER-Lab/MMLU-Pro", hf_subset="default",
          hf_revision="3373e0b32277875b8db2aa555a333b78a08477ea", metrics=[ACC_NORM_NOSPACE],
          evaluation_splits=["test"], few_shots_split="validation"),
    _task("gsm8k", prompt_function=gsm8k_prompt, hf_repo="openai/gsm8k", hf_subset="main",
          hf_revision="e53f048856ff4f594e959d75785d2c2d37b678ee", hf_avail_splits=["train", "test"],
          evaluation_splits=["test"], metrics=[QEM_GSM8K], generation_size=256, stop_sequence=STOP,
          few_shots_select="random_sampling_from_train"),
    # BBH's only split is "train": it is both evaluated and the few-shot pool (as in the paper)
    *[_task(f"bbh:{subset}", prompt_function=bbh_prompt, hf_repo="lighteval/big_bench_hard", hf_subset=subset,
            hf_revision="80610173426f05e6f1448f047e2db4840a7dd899", metrics=[EXACT_MATCH], hf_avail_splits=["train"],
            evaluation_splits=["train"], few_shots_split="train", stop_sequence=STOP)
      for subset in BBH_SUBSETS],
    # lighteval's IFEval at ea46419a (the instruct suite's `extended|ifeval|0|0`); it pinned no revision
    _task("ifeval", prompt_function=ifeval_prompt, hf_repo="google/IFEval", hf_subset="default", metrics=[IFEVAL],
          hf_avail_splits=["train"], evaluation_splits=["train"], few_shots_split="train",
          few_shots_select="random_sampling", generation_size=1280, stop_sequence=[]),
]
