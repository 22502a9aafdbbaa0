"""The SmolLM2 benchmark suite as lighteval 0.13 custom tasks (a module with TASKS_TABLE, passed to lighteval's
Registry as `custom_tasks`). Multiple-choice tasks use the cloze formulation (no lettered options: the
answer text itself is scored) and normalised log-likelihood accuracy (`acc_norm`, log-probability divided by
the answer's character length), the setup the SmolLM2 evaluation used for small models; GSM8K (5-shot) and
TriviaQA are generative and scored by quasi-exact match (`qem`). BBH and IFEval use lighteval's own tasks
(`bigbench_hard`, `ifeval`). Names carry a `smollm2_` prefix because lighteval refuses custom tasks that
shadow its built-ins."""

from __future__ import annotations

from functools import partial
from string import ascii_uppercase

import numpy as np
from lighteval.metrics.dynamic_metrics import LogLikelihoodAccMetric
from lighteval.metrics.metrics_sample import ExactMatches
from lighteval.metrics.normalizations import LogProbCharNorm, gsm8k_normalizer, harness_triviaqa_normalizer
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.multilingual.adapters import winogrand_adapter
from lighteval.tasks.requests import SamplingMethod
from lighteval.tasks.tasks.gsm8k import gsm8k_prompt
from lighteval.tasks.tasks.triviaqa import triviaqa_prompt
from lighteval.tasks.templates.continuation import get_continuation_prompt_function
from lighteval.tasks.templates.hellaswag import get_hellaswag_prompt_function
from lighteval.tasks.templates.multichoice import get_mcq_prompt_function
from lighteval.tasks.templates.utils.formulation import CFFormulation
from lighteval.utils.language import Language

EN, CF = Language.ENGLISH, CFFormulation()
ACC_NORM = LogLikelihoodAccMetric(normalization=LogProbCharNorm())  # metric name "acc_norm"


def _qem(normalizer) -> SampleLevelMetric:
    """Quasi-exact match: exact match after a task-specific normaliser (the GSM8K one keeps the number
    after '####'; the TriviaQA one lowercases and strips punctuation and articles)."""
    return SampleLevelMetric(metric_name="qem", sample_level_fn=ExactMatches(strip_strings=True, normalize_gold=normalizer,
                             normalize_pred=normalizer), category=SamplingMethod.GENERATIVE, corpus_level_fn=np.mean,
                             higher_is_better=True)


def _mc(name, repo, subset, split, adapter, fewshot_split="train", prompt=get_mcq_prompt_function, **kwargs):
    return LightevalTaskConfig(name=name, prompt_function=prompt(EN, adapter, formulation=CF), hf_repo=repo,
                               hf_subset=subset, hf_avail_splits=[fewshot_split, split], evaluation_splits=[split],
                               few_shots_split=fewshot_split, metrics=[ACC_NORM], **kwargs)


def _letter_index(key: str) -> int:
    return int(key) - 1 if key.isdigit() else ascii_uppercase.index(key.strip())


TASKS_TABLE = [
    _mc("smollm2_hellaswag", "Rowan/hellaswag", "default", "validation",
        lambda line: {"activity_label": line["activity_label"], "ctx_a": line["ctx_a"], "ctx_b": line["ctx_b"],
                      "continuations": line["endings"], "gold_idx": int(line["label"])},
        prompt=get_hellaswag_prompt_function),
    *[_mc(f"smollm2_arc:{subset.lower()}", "allenai/ai2_arc", f"ARC-{subset}", "test",
          lambda line: {"question": line["question"], "choices": line["choices"]["text"],
                        "gold_idx": _letter_index(line["answerKey"])})
      for subset in ("Easy", "Challenge")],
    _mc("smollm2_piqa", "ybisk/piqa", "plain_text", "validation",
        lambda line: {"question": line["goal"], "choices": [line["sol1"], line["sol2"]], "gold_idx": int(line["label"])}),
    _mc("smollm2_mmlu_pro", "TIGER-Lab/MMLU-Pro", "default", "test",
        lambda line: {"question": line["question"], "choices": line["options"], "gold_idx": line["answer_index"]},
        fewshot_split="validation"),
    _mc("smollm2_commonsenseqa", "tau/commonsense_qa", "default", "validation",
        lambda line: {"question": line["question"], "choices": line["choices"]["text"],
                      "gold_idx": line["choices"]["label"].index(line["answerKey"].strip())}),
    _mc("smollm2_openbookqa", "allenai/openbookqa", "main", "validation",
        lambda line: {"question": line["question_stem"], "choices": line["choices"]["text"],
                      "gold_idx": _letter_index(line["answerKey"])}),
    _mc("smollm2_winogrande", "allenai/winogrande", "winogrande_xl", "validation", partial(winogrand_adapter, EN),
        prompt=get_continuation_prompt_function),
    LightevalTaskConfig(name="smollm2_triviaqa", prompt_function=triviaqa_prompt, hf_repo="mandarjoshi/trivia_qa",
                        hf_subset="rc.nocontext", hf_avail_splits=["train", "validation"], evaluation_splits=["validation"],
                        few_shots_split="train", few_shots_select="random_sampling_from_train", generation_size=20,
                        stop_sequence=["\n", ".", ","], metrics=[_qem(harness_triviaqa_normalizer)]),
    LightevalTaskConfig(name="smollm2_gsm8k", prompt_function=gsm8k_prompt, hf_repo="openai/gsm8k", hf_subset="main",
                        hf_avail_splits=["train", "test"], evaluation_splits=["test"], few_shots_split="train",
                        few_shots_select="random_sampling_from_train", generation_size=256, stop_sequence=["Question:"],
                        metrics=[_qem(gsm8k_normalizer)]),
]
