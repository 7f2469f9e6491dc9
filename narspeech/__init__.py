"""narspeech: non-autoregressive speech and text generation in PyTorch."""

__version__ = "0.1.0"


def load_model(path: str, map_location: str = "cpu"):
    """Load a self-contained model file of any family (``exp/<name>/model.pt``): ``(model, task, config)``, the model
    in eval mode, the task with what its front end needs (``task.tokenizer`` for ASR), the experiment config."""
    from narspeech.train.checkpoint import load_model as _load

    return _load(path, map_location=map_location)
