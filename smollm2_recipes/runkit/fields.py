"""Config pieces every training stage shares: secrets kept out of saved arguments, and the fields SFT and DPO
both add to TRL's configs."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

SECRET_FIELDS = ("hub_token", "push_to_hub_token")


class NoSavedSecrets:
    """Mixed into a `TrainingArguments` subclass: its pickled form (what the Trainer writes as
    `training_args.bin` in every checkpoint and the final folder, and uploads with `push_to_hub`) carries no
    token, while the live object and its copies keep it for the upload itself. Python's pickle protocol
    (`__getstate__`) is the public hook: https://docs.python.org/3/library/pickle.html#object.__getstate__"""

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in SECRET_FIELDS:
            if state.get(name) is not None:
                state[name] = None
        return state

    def __copy__(self):
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new


@dataclass
class PostTrainingFields:
    """The keys SFT and DPO add on top of TRL's configs (one definition for both)."""

    global_batch_size: int | None = field(default=None, metadata={"help": "keep this global batch whatever the process "
                                          "count (gradient_accumulation_steps is derived; a contradicting one is refused)"})
