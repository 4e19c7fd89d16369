"""finetune/merge.py: a LoRA (or QLoRA) student merged into its unquantized base, checked by logits."""

import json
from pathlib import Path

import pytest
import torch

from tunelab.stages import finetune, infer, merge
from fakes import TINY_STUDENT_CONFIG

# Two steps at a high learning rate, so the adapter moves the logits and the check means something.
FAST_TRAIN = ["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--max_examples", "4",
              "--per_device_train_batch_size", "4", "--max_length", "128", "--max_steps", "2", "--learning_rate", "0.01",
              "--lora_dropout", "0", "--save_strategy", "no", "--report_to", "none", "--activation_checkpointing", "false",
              "--disable_tqdm", "true"]
SHORT_CHECK = ["--check_max_tokens", "64"]  # bf16 matmuls are slow on CPU
PROBE = "### Instruction:\nName a color.\n\n### Response:\nBlue"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    out = tmp_path_factory.mktemp("merge") / "student"
    finetune.finetune([*FAST_TRAIN, "--output_dir", str(out)])
    return out


@pytest.fixture(scope="module")
def merged32(adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("merge") / "merged32"
    summary = merge.merge(["--model", str(adapter), "--output_dir", str(out), "--dtype", "float32",
                           "--check_data", "data/alpaca_sample.json"])
    return out, summary


def logits(model, tokenizer, text=PROBE):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0]


def adapter_model(adapter, dtype=torch.float32):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunelab.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model("tunelab:tiny-llama"), dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter)).eval()


def test_float32_merge_matches_the_adapter_and_saves_a_standalone_model(adapter, merged32):
    out, summary = merged32
    check = summary["logits_check"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4 and check["argmax_agree"]
    assert check["adapter_effect_max_abs"] > 1e-2  # the adapter is not a no-op, so agreement is evidence
    assert check["sequences"] == 3 and check["atol"] == merge.DEFAULT_ATOL["float32"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "student_template.jinja2", "tunelab_model.json",
                 "config.yaml", "provenance.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info["adapter"] is False and info["merged_from"] == "tunelab:tiny-llama" and info["quantization"] == "none"
    assert info["template"] == "student_template.jinja2" and info["tiny_random"]
    assert (out / "student_template.jinja2").read_text() == (adapter / "student_template.jinja2").read_text()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["stage"] == "merge" and provenance["notes"]["logits_check"]["passed"]
    assert provenance["inputs"]["adapter"].split("sha256:")[1]
    assert provenance["models"] == {"base": "tunelab:tiny-llama", "adapter": str(adapter)}


def test_reloaded_merged_folder_gives_the_adapter_models_logits(adapter, merged32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = merged32
    tokenizer = AutoTokenizer.from_pretrained(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    peft_model = adapter_model(adapter)
    expected = logits(peft_model, tokenizer)
    assert (logits(reloaded, tokenizer) - expected).abs().max().item() <= 1e-4
    with peft_model.disable_adapter():
        assert (logits(peft_model, tokenizer) - expected).abs().max().item() > 1e-2


def test_inference_on_the_merged_folder_answers_like_the_adapter(adapter, merged32, tmp_path):
    out, _ = merged32
    argv = ["--data", "data/alpaca_heldout.json", "--limit", "2", "--max_new_tokens", "6", "--dtype", "float32"]
    infer.infer(["--model", str(out), "--output_dir", str(tmp_path / "m"), *argv])
    infer.infer(["--model", str(adapter), "--output_dir", str(tmp_path / "a"), *argv])
    merged_rows = [json.loads(line) for line in (tmp_path / "m/predictions.jsonl").read_text().splitlines()]
    adapter_rows = [json.loads(line) for line in (tmp_path / "a/predictions.jsonl").read_text().splitlines()]
    assert merged_rows[0]["adapter"] is None and merged_rows[0]["model"] == str(out)
    assert [r["prediction"] for r in merged_rows] == [r["prediction"] for r in adapter_rows]
    assert [r["prompt_tokens"] for r in merged_rows] == [r["prompt_tokens"] for r in adapter_rows]  # same prompt format
    provenance = json.loads((tmp_path / "m/provenance.json").read_text())
    assert "student_template" in provenance["templates"] and "tiny random" in provenance["notes"]["model"]


def test_qlora_adapter_merges_into_an_unquantized_bf16_base(tmp_path):
    from safetensors import safe_open

    student = tmp_path / "qlora"
    finetune.finetune([*FAST_TRAIN, "--quantization", "4bit", "--output_dir", str(student)])
    out = tmp_path / "merged"
    summary = merge.merge(["--model", str(student), "--output_dir", str(out), *SHORT_CHECK])  # bf16 by default
    check = summary["logits_check"]
    assert check["passed"] and check["dtype"] == "bfloat16" and check["atol"] == merge.DEFAULT_ATOL["bfloat16"]
    assert check["max_abs_diff"] < 0.1  # bf16 rounding on a tiny model, far inside the default
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        names = list(f.keys())
    assert dtypes == {"BF16"} and not any("lora" in n or "absmax" in n or "quant" in n for n in names)
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info["trained_quantization"] == "4bit" and info["quantization"] == "none" and info["dtype"] == "bfloat16"


def test_a_failed_logits_check_saves_nothing(adapter, tmp_path, capsys):
    out = tmp_path / "merged"
    # bf16 rounding alone exceeds a tolerance this small
    assert merge.main(["--model", str(adapter), "--output_dir", str(out), "--atol", "1e-9", *SHORT_CHECK]) == 2
    err = capsys.readouterr().err
    assert "logits differ" in err and "nothing saved" in err
    assert not out.exists()


def test_vision_student_merges_as_llava(tmp_path):
    """A LLaVA student folder as finetune writes one: adapter on the language model, the processor, chat format."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tunelab.models import resolve_model
    from tunelab.training.lora import VISION_LANGUAGE_TARGETS

    base = resolve_model("tunelab:tiny-llava")
    torch.manual_seed(0)
    peft_model = get_peft_model(LlavaForConditionalGeneration.from_pretrained(base), LoraConfig(
        r=4, lora_alpha=8, target_modules=VISION_LANGUAGE_TARGETS, task_type="CAUSAL_LM", init_lora_weights=False))
    student = tmp_path / "vision"
    peft_model.save_pretrained(student)
    AutoProcessor.from_pretrained(base).save_pretrained(student)
    (student / "tunelab_model.json").write_text(json.dumps({"task": "vision_sft", "base": "tunelab:tiny-llava",
                                                            "model_type": "llava", "adapter": True, "quantization": "none",
                                                            "template": "chat"}))
    summary = merge.merge(["--model", str(student), "--output_dir", str(tmp_path / "m"), "--dtype", "float32"])
    assert summary["logits_check"]["max_abs_diff"] <= 1e-4 and summary["logits_check"]["adapter_effect_max_abs"] > 1e-2
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"] and "vision_config" in config
    assert (tmp_path / "m/processor_config.json").exists() and not (tmp_path / "m/student_template.jinja2").exists()
    processor = AutoProcessor.from_pretrained(tmp_path / "m")
    assert processor.chat_template and hasattr(processor, "image_processor")
    card = (tmp_path / "m/README.md").read_text()
    assert "a vision-language (llava) student" in card.lower() and "- llava" in card and "causal language-model" not in card


def test_refuses_folders_with_nothing_to_merge(tmp_path, adapter, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hi")
    assert merge.main(["--model", str(plain), "--output_dir", str(tmp_path / "o")]) == 2
    assert "not a finetune output folder: no tunelab_model.json" in capsys.readouterr().err

    full = tmp_path / "full"
    full.mkdir()
    (full / "tunelab_model.json").write_text(json.dumps({"task": "sft", "base": "tunelab:tiny-llama", "adapter": False}))
    assert merge.main(["--model", str(full), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "full fine-tune" in err and "nothing to merge" in err

    assert merge.main(["--model", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert merge.main(["--model", str(adapter), "--output_dir", str(adapter)]) == 2
    assert "adapter folder itself" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_refuses_an_existing_output_dir_without_overwrite(adapter, tmp_path, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert merge.main(["--model", str(adapter), "--output_dir", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_push_to_hub_needs_a_token_before_any_work(adapter, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "merged"
    assert merge.main(["--model", str(adapter), "--output_dir", str(out), "--push_to_hub", "--hub_repo_id", "me/x"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_placeholder_value")
    assert merge.main(["--model", str(adapter), "--output_dir", str(out), "--push_to_hub"]) == 2
    assert "--hub_repo_id user/name" in capsys.readouterr().err
    assert merge.main(["--model", str(adapter), "--output_dir", str(out), "--hub_repo_id", "me/x"]) == 2
    assert "push_to_hub is off" in capsys.readouterr().err
    assert not out.exists()


def test_push_to_hub_uploads_the_folder_and_never_records_the_token(adapter, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    token = "hf_TestTokenThatMustNotLeak123"
    monkeypatch.setenv("HF_TOKEN", token)
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        # what would be uploaded, read at upload time
        kwargs["files"] = {p.name: p.read_text() for p in Path(kwargs["folder_path"]).iterdir()
                           if p.suffix in (".json", ".yaml", ".md")}

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "merged"
    assert merge.main(["--model", str(adapter), "--output_dir", str(out), "--dtype", "float32", "--push_to_hub",
                       "--hub_repo_id", "me/student", "--hub_private"]) == 0
    captured = capsys.readouterr()
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    create, upload = calls[0][2], calls[1][2]
    assert create["token"] == token and create["private"] is True and create["exist_ok"]
    assert upload["token"] == token and upload["folder_path"] == str(out) and "provenance.json" in upload["files"]
    assert "tunelab:tiny-llama" in upload["files"]["README.md"]  # the model card goes with the weights
    assert "https://huggingface.co/me/student" in captured.out
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["notes"]["hub"] == {"repo_id": "me/student", "private": True}
    for text in [captured.out, captured.err, *upload["files"].values()]:
        assert token not in text


def test_merged_folder_carries_the_adapters_card_facts_and_the_check(adapter, merged32, tunelab_cache):
    from huggingface_hub import ModelCard

    out, summary = merged32
    text = (out / "README.md").read_text()
    for bad in ("None", "More Information Needed", ".cache/tunelab", "site-packages", str(tunelab_cache)):
        assert bad not in text, bad
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "merged" in card.data.tags
    assert "`tunelab:tiny-llama`: a tiny random Llama" in text and "knows nothing" in text
    data = json.loads((adapter / "provenance.json").read_text())["inputs"]["data[0]"]
    assert data.split(" sha256:")[1] in text and "alpaca_sample.json" in text
    assert "## Merge" in text and f"| max_abs_diff | {summary['logits_check']['max_abs_diff']:.4g} |" in text
    assert "| LoRA r | 8 |" in text
    assert json.loads((out / "provenance.json").read_text())["outputs"]["model_card"].endswith("README.md")


def test_help_lists_the_settings(capsys):
    with pytest.raises(SystemExit) as exit_:
        merge.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--atol" in out and "HF_TOKEN" in out and "float32" in out
