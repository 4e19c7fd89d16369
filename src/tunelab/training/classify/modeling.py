"""Classifier models: the loss, the encoder with a new head (its own, or a linear layer over the mean of
its outputs), its starting biases, and LoRA around it.

transformers' sequence-classification heads read one token: BERT's pooler over [CLS], DistilBERT's
first token, a decoder's last. Sentence-embedding models such as all-MiniLM-L6-v2 were trained
with their outputs averaged over the attention mask instead; their [CLS] output was never trained
to summarise the text (and their checkpoints hold no pooler, so BERT's head starts from a random
projection of it). `MeanPooledClassifier` (`pooling: mean`) averages the encoder's outputs the way
such models were trained, then applies dropout and one linear layer, `classifier` (the name PEFT
trains in full for SEQ_CLS). It is saved as any transformers model (config.json with
`tunelab_pooling: mean`, safetensors with `encoder.*` and `classifier.*` weights); `load_classifier`
reads it back. Plain `AutoModelForSequenceClassification` cannot: it would build the one-token head.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig,
                          PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput

from ...console import get_logger
from ...models import model_type
from ..lora import lora_from_settings

_log = get_logger("finetune")

HF_PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}


def classification_loss(logits, labels, problem_type: str, weights=None, label_smoothing: float = 0.0):
    """Cross-entropy over classes (single_label, `weights` per class) or BCE per label (multi_label,
    `weights` = pos_weight per label). Means over the batch (weighted CE: over the targets' weights)."""
    if problem_type == "single_label":
        return F.cross_entropy(logits.float(), labels.long(), weight=weights, label_smoothing=label_smoothing)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weights)


POOLING_KEY = "tunelab_pooling"  # in config.json: how the saved classifier reads the encoder


def _encoder_from_config(config: PretrainedConfig):
    # BERT-style encoders add a pooler by default; its weights would go untrained (and unused).
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # models without a pooler (DistilBERT, decoders) take no such argument
        return AutoModel.from_config(config)


class MeanPooledClassifier(PreTrainedModel):
    config_class = PretrainedConfig
    base_model_prefix = "encoder"
    accepts_loss_kwargs = False  # the loss is a batch mean: the Trainer scales it for accumulation
    supports_gradient_checkpointing = True  # the encoder's own layers checkpoint (on by default on CUDA)

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.encoder = _encoder_from_config(config)
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", None)
        self.dropout = torch.nn.Dropout(0.1 if dropout is None else dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        # Only the head is new; the encoder's weights are loaded over whatever this gives them.
        if isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(0.0, getattr(self.config, "initializer_range", 0.02))
            if module.bias is not None:
                module.bias.data.zero_()

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None,
                labels=None, **kwargs) -> SequenceClassifierOutput:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                              **extra).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            multi = self.config.problem_type == "multi_label_classification"
            loss = classification_loss(logits, labels, "multi_label" if multi else "single_label")
        return SequenceClassifierOutput(loss=loss, logits=logits)


def mean_pooled_from_encoder(path: str, *, trust_remote_code: bool = False, **config_overrides):
    """A MeanPooledClassifier over the pretrained encoder at `path` (a new head of
    config_overrides["num_labels"] outputs), and the names of its modules the checkpoint did not hold."""
    encoder = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **config_overrides)
    setattr(config, POOLING_KEY, "mean")
    config.architectures = [MeanPooledClassifier.__name__]
    model = MeanPooledClassifier(config)
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: encoder weights that {type(model.encoder).__name__} has no place for: "
                         f"{unexpected[:5]}")
    new = sorted({"classifier", *(f"encoder.{k.rsplit('.', 1)[0]}" for k in missing)})
    return model, new


def load_mean_pooled(path, **kwargs) -> MeanPooledClassifier:
    """A saved MeanPooledClassifier folder."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False))
    return MeanPooledClassifier.from_pretrained(path, config=config, use_safetensors=True, **kwargs)


def load_classifier_base(path: str, labels: tuple[str, ...], *, problem_type: str = "multi_label",
                         trust_remote_code: bool = False, with_new_modules: bool = False, pooling: str = "model"):
    """A sequence-classification model with a fresh head of len(labels) outputs: the model's own
    (`pooling` model) or a linear layer over the mean of its outputs (mean, `MeanPooledClassifier`).

    `with_new_modules`: also return the names of the modules the checkpoint did not hold (the new
    head: BERT's `classifier`, DistilBERT's `pre_classifier` and `classifier`, a missing pooler).
    """
    settings = dict(num_labels=len(labels), problem_type=HF_PROBLEM_TYPES[problem_type],
                    id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    if pooling == "mean":
        model, new_modules = mean_pooled_from_encoder(path, trust_remote_code=trust_remote_code, **settings)
        return (model, new_modules) if with_new_modules else model
    model, loading = AutoModelForSequenceClassification.from_pretrained(
        path, **settings, use_safetensors=True, trust_remote_code=trust_remote_code, output_loading_info=True)
    if not with_new_modules:
        return model
    return model, sorted({key.rsplit(".", 1)[0] for key in loading["missing_keys"]})


def match_pad_token(model, tokenizer) -> None:
    """A decoder's own head (Llama, Mistral) reads the last token that is not its config's pad token: the
    config must name the pad token the tokenizer pads with. SmolLM2's config says <|im_end|> (its EOS), while
    tunelab pads with another token (never EOS), so without this every padded row was read at a pad."""
    config = model.config.get_text_config()  # the head reads the text model's config (itself, but for composites)
    if tokenizer.pad_token_id is not None and getattr(config, "pad_token_id", None) != tokenizer.pad_token_id:
        config.pad_token_id = tokenizer.pad_token_id


def set_head_bias(model, bias: np.ndarray) -> str | None:
    """Write `bias` into the classification head (the last linear layer with one output per label and a
    bias: BERT's and DistilBERT's `classifier`, RoBERTa's `classifier.out_proj`). Returns the layer's
    name, or None where the head has no bias (a decoder's `score`)."""
    heads = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == len(bias) and m.bias is not None]
    if not heads:
        return None
    name, head = heads[-1]
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return name


def classifier_model(base: str, labels: tuple[str, ...], problem_type: str, mcfg, *, trust_remote_code: bool = False,
                     head_bias: np.ndarray | None = None, pooling: str = "model") -> tuple[object, bool]:
    """The model to train: the encoder with a new head, wrapped in LoRA when `mcfg.use_lora`, and
    whether the head's biases were set to `head_bias` (not where none is given or the head has none).

    Under LoRA every newly initialised module is trained in full (`modules_to_save`): PEFT adds
    `classifier`/`score` (and by suffix DistilBERT's `pre_classifier`) by itself, but the pooler that
    BERT-style models get when the checkpoint has none (sentence-transformers exports) would
    otherwise stay a frozen random projection.
    """
    model, new_modules = load_classifier_base(base, labels, problem_type=problem_type, pooling=pooling,
                                              trust_remote_code=trust_remote_code, with_new_modules=True)
    # before LoRA, so the trained copy of the head (modules_to_save) starts there too
    bias_set = head_bias is not None and set_head_bias(model, head_bias) is not None
    if head_bias is not None and not bias_set:
        _log.info(f"the head of {type(model).__name__} has no bias; it starts as the library builds it")
    if not mcfg.use_lora:
        return model, bias_set
    config = lora_from_settings(mcfg, model_type(base), "classify", "SEQ_CLS")
    config.modules_to_save = sorted(set(config.modules_to_save or []) | set(new_modules)) or None
    return get_peft_model(model, config), bias_set
