"""Text classifiers tuned on labeled texts (`task: classify`): encoders such as MiniLM, DistilBERT and BERT,
or a decoder's classification head, full fine-tuning or LoRA.

- config.py: the task's settings (`ClassifierConfig`)
- data.py: labeled texts in every layout (`load_labeled_texts`) and their tokens
- held_out.py: the train / eval / test split and `data_splits.json`
- imbalance.py: class weights, balanced draws, the head's starting biases
- modeling.py: the loss, the models (own head or mean pooling), LoRA around them
- trainer.py: `ClassifierTrainer(Trainer)` and its metrics
- predict.py: `ClassifierInfo`, loading a trained folder, class probabilities (what evaluate needs)
- recipe.py: `ClassifyRecipe`, the task itself

single_label (one class per text: IMDB sentiment, DBpedia-14): softmax + cross-entropy, accuracy and
macro-F1 during training. multi_label (any number per text: Jigsaw toxicity, GoEmotions): one sigmoid
per label + BCE, micro/macro-F1 and mean ROC-AUC during training, per-label thresholds tuned on the eval
set and saved with the model.
"""
