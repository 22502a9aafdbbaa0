"""`smollm2 sft`, `smollm2 dpo` and `smollm2 merge` through their real entry points, a few steps each on a
2-layer model with the real tokenizer: the output folders load with Auto classes, carry the chat template,
and stop generating at <|im_end|>."""

import json
from pathlib import Path

import pytest
import torch

from smollm2_recipes import cli

pytestmark = pytest.mark.slow  # each test trains a few steps (about 10-60 s on an idle 2-core machine)

SFT_RECIPE, DPO_RECIPE = "recipes/smollm2/tiny/sft.yaml", "recipes/smollm2/tiny/dpo.yaml"
FAST = ["--bf16", "false", "--max_steps", "2", "--arith_eval_samples", "0", "--logging_steps", "1"]


def _assert_chat_model_folder(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.chat_template and "{% generation %}" not in tok.chat_template
    assert model.generation_config.eos_token_id == im_end == tok.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tok.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")
    # Make <|im_end|> the likeliest token: generation must stop right there, by the saved config alone.
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False, sequence_bias={(im_end,): 100.0})
    assert out[0, prompt["input_ids"].shape[1]:].tolist() == [im_end]
    return model


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, micro_model_dir):
    out = tmp_path_factory.mktemp("sft") / "run"
    rc = cli.run("sft", [SFT_RECIPE, "--model_name_or_path", micro_model_dir, "--output_dir", str(out), "--max_train_samples", "32", *FAST])
    assert rc == 0
    return out


def test_sft_entry_point_writes_a_loadable_chat_model(sft_dir, micro_model_dir):
    from transformers import AutoModelForCausalLM

    model = _assert_chat_model_folder(sft_dir)
    before = AutoModelForCausalLM.from_pretrained(micro_model_dir)
    assert not torch.equal(model.model.embed_tokens.weight, before.model.embed_tokens.weight)  # it trained
    logs = json.loads((sft_dir / "log_history.json").read_text())
    assert sum("loss" in entry for entry in logs) == 2
    assert (sft_dir / "resolved_config.yaml").is_file()
    assert json.loads((sft_dir / "data_report.json").read_text())["kept"] == 32


def test_sft_refuses_to_overwrite_a_finished_run(sft_dir, micro_model_dir, capsys):
    before = (sft_dir / "model.safetensors").stat().st_mtime_ns
    rc = cli.run("sft", [SFT_RECIPE, "--model_name_or_path", micro_model_dir, "--output_dir", str(sft_dir), *FAST])
    assert rc == 2 and "already holds a finished run" in capsys.readouterr().err
    assert (sft_dir / "model.safetensors").stat().st_mtime_ns == before


def test_dpo_entry_point_logs_rewards_with_one_model(sft_dir, tmp_path):
    out = tmp_path / "dpo"
    mixture = json.dumps([{"path": "arith:preferences", "num_samples": 8}])
    rc = cli.run("dpo", [DPO_RECIPE, "--model_name_or_path", str(sft_dir), "--output_dir", str(out), "--dataset_mixture", mixture,
                         "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", *FAST])
    assert rc == 0
    _assert_chat_model_folder(out)
    logs = [e for e in json.loads((out / "log_history.json").read_text()) if "loss" in e]
    assert len(logs) == 2
    for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
        assert all(key in e for e in logs), key


def test_dpo_reference_is_the_starting_model_and_not_kept(sft_dir, tmp_path):
    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.post_training.dpo import CONFIG_TYPES, build_trainer

    mixture = json.dumps([{"path": "arith:preferences", "num_samples": 4}])
    *parsed, _ = recipe_parsing.parse(CONFIG_TYPES, [DPO_RECIPE, "--model_name_or_path", str(sft_dir),
                           "--output_dir", str(tmp_path), "--dataset_mixture", mixture, "--rpo_alpha", "0.5", *FAST])
    trainer, _ = build_trainer(*parsed)
    assert trainer.ref_model is None and trainer.args.precompute_ref_log_probs  # one model in memory
    assert trainer.loss_types == ["sigmoid", "sft"] and trainer.loss_weights == [1.0, 0.5]  # rpo_alpha = NLL on chosen


def test_lora_run_then_merge_gives_a_plain_model(micro_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "lora"
    rc = cli.run("sft", [SFT_RECIPE, "--model_name_or_path", micro_model_dir, "--output_dir", str(adapter), "--max_train_samples", "16",
                         "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj",
                         "--learning_rate", "0.05", *FAST])
    assert rc == 0 and (adapter / "adapter_config.json").is_file()
    merged_dir = tmp_path / "merged"
    assert cli.run("merge", [str(adapter), str(merged_dir), "--base", micro_model_dir]) == 0
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not any("lora" in k for k in merged.state_dict())
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(micro_model_dir), str(adapter))
    ids = torch.tensor([[1, 520, 30, 2, 198]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, AutoModelForCausalLM.from_pretrained(micro_model_dir)(ids).logits)
    _assert_chat_model_folder(merged_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU messages")
@pytest.mark.parametrize("flags,message", [(["--use_liger_kernel", "true"], "use_liger_kernel: true needs a CUDA GPU"),
                                           (["--use_peft", "true", "--load_in_4bit", "true"], "QLoRA (load_in_4bit / load_in_8bit) needs a CUDA GPU")])
def test_gpu_only_features_fail_clearly_on_cpu(micro_model_dir, tmp_path, capsys, flags, message):
    rc = cli.run("sft", [SFT_RECIPE, "--model_name_or_path", micro_model_dir, "--output_dir", str(tmp_path / "x"), *FAST, *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
