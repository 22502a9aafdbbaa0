"""Small distilabel steps the synth pipelines share. Module level so distilabel can pickle them into its
step processes (or Ray actors). No `from __future__ import annotations`: distilabel reads the real
`StepInput` annotation of `process`."""


from distilabel.steps import Step, StepInput


class KeepStatistics(Step):
    """Copies the LLM statistics of an earlier step (`distilabel_metadata["statistics_<source_step>"]`) into a
    column: the next Task replaces `distilabel_metadata` with its own, and the finish reasons of every turn
    ("stop" / "length") are needed after the pipeline to drop turns cut at max_new_tokens."""

    source_step: str
    column: str = "generation_statistics"

    @property
    def inputs(self) -> "list[str]":
        return []

    @property
    def outputs(self) -> "list[str]":
        return [self.column]

    def process(self, inputs: StepInput):  # type: ignore[override]
        for row in inputs:
            row[self.column] = (row.get("distilabel_metadata") or {}).get(f"statistics_{self.source_step}")
        yield inputs
