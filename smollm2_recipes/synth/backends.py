"""LLM backends named in a recipe's YAML, built as distilabel LLM objects.

    llm:
      backend: transformers            # transformers | vllm | vllm_server | openai | inference_endpoints
      model: embedded:SmolLM2-135M-Instruct
      magpie_pre_query_template: "<|im_start|>user\\n"   # only for MagPie; "llama3" / "qwen2" for those models
      # transformers:         dtype, device, batch_size, torch_threads (per step process; 1 is fork-safe)
      # vllm:                 tensor_parallel_size, dtype, quantization, extra_kwargs, chat_template
      # vllm_server / openai: base_url, api_key_env (the *name* of the env var holding the key)
      # inference_endpoints:  endpoint_name or base_url, tokenizer_id

`transformers` is the offline default; the others only need to be constructible here (a real run has the
GPU, the server or the endpoint). Generation settings (`max_new_tokens`, `temperature`, `top_p`) come from
the pipeline's config and are translated to the keyword each backend's `generate` accepts.
"""

from __future__ import annotations

import os
from typing import Any

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.validation import reject_unknown_keys

BACKENDS = ("transformers", "vllm", "vllm_server", "openai", "inference_endpoints")
DEFAULT_LLM = {"backend": "transformers", "model": "embedded:SmolLM2-135M-Instruct"}
_COMMON_KEYS = {"backend", "model", "magpie_pre_query_template"}
_EXTRA_KEYS = {
    "transformers": {"dtype", "device", "batch_size", "chat_template", "tokenizer", "torch_threads"},
    "vllm": {"dtype", "tensor_parallel_size", "quantization", "extra_kwargs", "chat_template", "tokenizer"},
    "vllm_server": {"base_url", "api_key_env", "tokenizer"},
    "openai": {"base_url", "api_key_env"},
    "inference_endpoints": {"endpoint_name", "base_url", "tokenizer_id", "api_key_env"},
}
# Which generation kwargs each backend's `generate` accepts (distilabel validates them strictly).
_GEN_KEYS = {
    "transformers": {"max_new_tokens", "temperature", "top_p", "do_sample", "repetition_penalty"},
    "vllm": {"max_new_tokens", "temperature", "top_p", "repetition_penalty"},
    "vllm_server": {"max_new_tokens", "temperature", "top_p"},
    "openai": {"max_new_tokens", "temperature", "top_p"},
    "inference_endpoints": {"max_new_tokens", "temperature", "top_p", "do_sample", "repetition_penalty"},
}


def validate_llm(spec: dict | None, role: str = "llm") -> dict:
    """Check a recipe's LLM block early (before any pipeline starts) and fill defaults."""
    spec = dict(DEFAULT_LLM if spec is None else spec)
    if not isinstance(spec, dict):
        raise UserError(f"'{role}' must be a mapping with at least 'backend' and 'model', got {spec!r}.")
    backend = spec.setdefault("backend", "transformers")
    if backend not in BACKENDS:
        raise UserError(f"Unknown LLM backend '{backend}' in '{role}'. Valid: {', '.join(BACKENDS)}.")
    if not spec.get("model") and backend != "inference_endpoints":
        raise UserError(f"'{role}' needs a 'model' (a Hub id, a folder or embedded:SmolLM2-135M-Instruct).")
    reject_unknown_keys(spec, _COMMON_KEYS | _EXTRA_KEYS[backend], f"'{role}' for backend '{backend}'")
    return spec


def generation_kwargs(backend: str, max_new_tokens: int, temperature: float, top_p: float = 1.0) -> dict[str, Any]:
    wanted = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    if temperature <= 0:  # greedy: samplers reject temperature 0, so ask for argmax instead
        wanted.update(temperature=1.0, do_sample=False)
    elif "do_sample" in _GEN_KEYS[backend]:
        wanted["do_sample"] = True
    return {k: v for k, v in wanted.items() if k in _GEN_KEYS[backend]}


def _api_key(spec: dict):
    env = spec.get("api_key_env")
    if env is None:
        return None
    if env not in os.environ:
        raise UserError(f"The environment variable '{env}' named by api_key_env is not set.")
    return os.environ[env]


def build_llm(spec: dict | None, *, max_new_tokens: int, temperature: float, top_p: float = 1.0,
              magpie: bool = False, batch_size: int = 8, role: str = "llm", seed: int = 42,
              json_choices: dict[str, list[str]] | None = None):
    """A distilabel LLM for `spec`. `magpie=True` turns on the pre-query template MagPie needs. `json_choices`
    ({key: [allowed values]}) constrains each reply to one JSON object of that closed set: a trie over the
    tokenised objects with transformers, a JSON schema with vLLM (distilabel's structured output, outlines);
    other backends answer unconstrained and the reply is parsed leniently."""
    spec = validate_llm(spec, role)
    backend = spec["backend"]
    gen = generation_kwargs(backend, max_new_tokens, temperature, top_p)
    kwargs: dict[str, Any] = {"generation_kwargs": gen}
    if magpie:
        if backend in ("openai",):
            raise UserError(f"MagPie needs raw completions with a pre-query template; backend '{backend}' is chat-only. "
                            "Use transformers, vllm, vllm_server or inference_endpoints.")
        kwargs.update(use_magpie_template=True,
                      magpie_pre_query_template=spec.get("magpie_pre_query_template", "<|im_start|>user\n"))

    if backend == "transformers":
        model = assets.resolve(spec["model"])
        from smollm2_recipes.synth.transformers_llm import BatchedTransformersLLM as cls

        return cls(model=model, tokenizer=assets.resolve(spec["tokenizer"]) if spec.get("tokenizer") else None,
                   torch_dtype=spec.get("dtype", "float32"), device=spec.get("device", "cpu"),
                   chat_template=spec.get("chat_template"), pipeline_batch_size=spec.get("batch_size", batch_size), progress_desc=f"{role} generations", seed=seed,
                   torch_threads=spec.get("torch_threads", 1), json_choices=json_choices, **kwargs)
    if backend == "vllm":
        from distilabel.models.llms import vLLM

        extra = dict(spec.get("extra_kwargs") or {})
        if spec.get("tensor_parallel_size"):
            extra["tensor_parallel_size"] = spec["tensor_parallel_size"]
        if json_choices:
            from smollm2_recipes.synth.transformers_llm import json_schema

            kwargs["structured_output"] = {"format": "json", "schema": json_schema(json_choices)}
        return vLLM(model=spec["model"], dtype=spec.get("dtype", "auto"), quantization=spec.get("quantization"),
                    tokenizer=spec.get("tokenizer"), chat_template=spec.get("chat_template"), extra_kwargs=extra, **kwargs)
    if backend == "vllm_server":
        from distilabel.models.llms import ClientvLLM

        return ClientvLLM(model=spec["model"], base_url=spec.get("base_url", "http://localhost:8000/v1"),
                          api_key=_api_key(spec) or "EMPTY", tokenizer=spec.get("tokenizer", spec["model"]), **kwargs)
    if backend == "openai":
        from distilabel.models.llms import OpenAILLM

        return OpenAILLM(model=spec["model"], base_url=spec.get("base_url", "https://api.openai.com/v1"),
                         api_key=_api_key(spec) or os.environ.get("OPENAI_API_KEY", "EMPTY"), **kwargs)
    from distilabel.models.llms import InferenceEndpointsLLM

    ie_kwargs = {k: spec[k] for k in ("endpoint_name", "base_url") if spec.get(k)}
    if spec.get("model") and not ie_kwargs:
        ie_kwargs["model_id"] = spec["model"]
    key = _api_key(spec)
    if key:
        ie_kwargs["api_key"] = key
    return InferenceEndpointsLLM(tokenizer_id=spec.get("tokenizer_id", spec.get("model")), **ie_kwargs, **kwargs)
