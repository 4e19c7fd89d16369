"""A sequence classifier over the mean of an encoder's token outputs (`pooling: mean`).

transformers' sequence-classification heads read one token: BERT's pooler over [CLS], DistilBERT's
first token, a decoder's last. Sentence-embedding models such as all-MiniLM-L6-v2 were trained
with their outputs averaged over the attention mask instead; their [CLS] output was never trained
to summarise the text (and their checkpoints hold no pooler, so BERT's head starts from a random
projection of it). This model averages the encoder's outputs the way such models were trained,
then applies dropout and one linear layer, `classifier` (the name PEFT trains in full for SEQ_CLS).

It is saved as any transformers model (config.json with `tunelab_pooling: mean`, safetensors with
`encoder.*` and `classifier.*` weights); `load_classifier` reads it back. Plain
`AutoModelForSequenceClassification` cannot: it would build the one-token head instead.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

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
            from .classifier import classification_loss

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
