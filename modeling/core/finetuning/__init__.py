"""Fine-tuning the transformer itself on the labeled items, on a GPU when there is one.

:class:`FineTunedClassifier` puts ``AutoModelForSequenceClassification`` (single- or
multi-label) behind the same :class:`~modeling.core.classifiers.Classifier` interface as the fast
head, so the live queue and ``simulate`` use it the same way; its ``X`` is an array of texts.
:func:`train` is the loop, with everything that makes device time count: mixed precision,
gradient accumulation, warmup and decay, early stopping that keeps the best weights, optional
gradual unfreezing, cached tokenization, length-bucketed batches, a DataLoader that keeps the
device fed, a smoke step that fails a broken configuration in seconds, and atomic checkpoints
to resume from after a crash. Hyper-parameters live in :class:`FineTuneConfig`; progress,
early stopping and cancelling are small :class:`Callback` objects. Nothing here imports Django.

The package, by concern: :mod:`.config` (hyper-parameters, device and precision), :mod:`.data`
(tokens, batches, the DataLoader), :mod:`.model` (loading, loss, scoring), :mod:`.optimization`
(parameter groups, learning-rate schedule, unfreezing), :mod:`.callbacks`, :mod:`.loop`
(:func:`train`) and :mod:`.classifier`. Import from the package itself.
"""

from modeling.core.finetuning.callbacks import (
    Callback,
    CancelCallback,
    EarlyStopping,
    ProgressCallback,
    TrainingCancelled,
    TrainingState,
)
from modeling.core.finetuning.classifier import (
    AdaptingFineTunes,
    FineTunedClassifier,
    WarmStartedFineTuning,
)
from modeling.core.finetuning.config import (
    FineTuneConfig,
    Precision,
    resolve_device,
    resolve_precision,
)
from modeling.core.finetuning.data import (
    Examples,
    TokenCache,
    TokenIds,
    length_batches,
    padding_fraction,
    validation_split,
)
from modeling.core.finetuning.loop import SmokeStepFailed, TrainingResult, train
from modeling.core.finetuning.model import (
    MeanPooledClassifier,
    StateDict,
    evaluate_loss,
    load_classifier_model,
    mc_dropout_probabilities,
    pooled_embeddings,
    predict_logits,
    state_pooling,
)

__all__ = [
    "AdaptingFineTunes",
    "Callback",
    "CancelCallback",
    "EarlyStopping",
    "Examples",
    "FineTuneConfig",
    "FineTunedClassifier",
    "MeanPooledClassifier",
    "Precision",
    "ProgressCallback",
    "SmokeStepFailed",
    "StateDict",
    "TokenCache",
    "TokenIds",
    "TrainingCancelled",
    "TrainingResult",
    "TrainingState",
    "WarmStartedFineTuning",
    "evaluate_loss",
    "length_batches",
    "load_classifier_model",
    "mc_dropout_probabilities",
    "padding_fraction",
    "pooled_embeddings",
    "predict_logits",
    "resolve_device",
    "resolve_precision",
    "state_pooling",
    "train",
    "validation_split",
]
