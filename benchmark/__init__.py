"""cfbench core: model, streams, trainer, linear probe, evaluation, metrics and results."""
