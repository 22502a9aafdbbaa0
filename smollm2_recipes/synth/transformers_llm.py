"""A distilabel TransformersLLM that batches prompts and shows a progress bar. Lives at module level so
distilabel can pickle it into its step processes."""

from __future__ import annotations

from typing import Any

from distilabel.models.llms import TransformersLLM
from pydantic import Field, PrivateAttr


class BatchedTransformersLLM(TransformersLLM):
    """distilabel's TransformersLLM feeds the HF pipeline one prompt at a time; batching the prompts
    of a distilabel batch makes CPU generation several times faster for the same outputs' shape."""

    pipeline_batch_size: int = Field(default=8)
    progress_desc: str = Field(default="generations")
    seed: int = Field(default=42)
    # distilabel forks its step processes; if the parent already ran torch (an embedding search, a training
    # step in the same Python), a forked child deadlocks in its first multi-threaded op. One intra-op thread
    # per step is safe, and on a CPU the steps of a pipeline run side by side anyway.
    torch_threads: int = Field(default=1)
    _progress: Any = PrivateAttr(default=None)

    def load(self) -> None:
        import torch
        from transformers import set_seed

        torch.set_num_threads(self.torch_threads)
        set_seed(self.seed)  # sampling in the step process is reproducible for a given recipe
        super().load()
        self._pipeline._batch_size = self.pipeline_batch_size
        self._pipeline.tokenizer.padding_side = "left"  # decoder-only batches are padded on the left

    # The same explicit signature as TransformersLLM.generate: distilabel reads it to find runtime parameters.
    def generate(self, inputs: list, num_generations: int = 1, max_new_tokens: int = 128, temperature: float = 0.1,
                 repetition_penalty: float = 1.1, top_p: float = 1.0, top_k: int = 0, do_sample: bool = True) -> list:
        from tqdm.auto import tqdm

        if self._progress is None:  # one bar per step process: generations done so far and their rate
            self._progress = tqdm(desc=self.progress_desc, unit="gen", dynamic_ncols=True)
        outputs = super().generate(inputs=inputs, num_generations=num_generations, max_new_tokens=max_new_tokens,
                                   temperature=temperature, repetition_penalty=repetition_penalty, top_p=top_p,
                                   top_k=top_k, do_sample=do_sample)
        self._progress.update(len(inputs) * num_generations)
        return outputs
