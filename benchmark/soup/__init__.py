"""Model soups: Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models
improves accuracy without increasing inference time", ICML 2022, arXiv 2203.05482.

The ingredients are finished runs of one sequence fine-tuned from the same initial weights (other
seeds, learning rates or strategies). The soup is one model whose every floating-point tensor of
the state dict (encoder and task heads) is the mean of the ingredients':

- uniform soup: the mean of all of them;
- greedy soup (the paper's recipe, as mlfoundations/model-soups main.py does it): sort the
  ingredients by held-out validation accuracy, start from the best, and add the next one only if
  the validation accuracy of the running average of the kept ones plus it strictly improves.

Validation accuracy here = the mean over the sequence's tasks of the task head's accuracy on the
task's validation split (the fixed 10 % of its train split that fine-tuning never sees,
``benchmark.probe.splits.validation_split``), at the final stage; never a test split.

Integer and boolean tensors (e.g. BatchNorm's ``num_batches_tracked``) cannot be averaged: they
are taken from the first ingredient (PyTorch reads ``num_batches_tracked`` only when a batch norm
has ``momentum=None``, which no encoder here uses). The task heads' ``scale`` buffers (the cosine
head's temperature: CLIP's logit scale for zero-shot heads, 1 for LP-initialised ones) must be
equal across ingredients, since averaging W separately from its scale would be meaningless.

The soup is evaluated as a run is (``MatrixEvaluation``, stage by stage) and written as a run
folder ``OUT/<sequence>/soup-<mode>/seed<N>/``. When every ingredient kept every stage's
checkpoint (``--keep-checkpoints all``) soup stage t averages the ingredients' stage-t
checkpoints and every row is measured; otherwise only the final stage is, row 0 (the pretrained
model, identical for every ingredient) is the first ingredient's, and rows 1..T-1 are absent, so
the metrics that read them (forgetting, BWT, the zero-shot Transfer and Avg) are NaN. Greedy
selection is made once on the final-stage models, and the same kept ingredients make every stage.

The averaging (``average_state_dicts``, average.py) and the greedy selection
(``greedy_select``, greedy.py) are pure functions; ``make_soup`` (make.py) reads the
ingredients (ingredients.py), builds the evaluation with ``session.prepare`` and
``session.build_session`` from the first ingredient's config.json (evaluate.py), and writes
the run folder. The command, its options and their help: benchmark/commands/soup.py.
"""
