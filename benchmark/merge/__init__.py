"""Model merging in the continual setting: ``run_benchmark.py merge RUN_DIR... --method M``.

Methods (the task vector of a fine-tuned encoder theta is tau = theta - theta_0, theta_0 the
pretrained encoder):

- task arithmetic (Ilharco et al., ICLR 2023): theta = theta_0 + lambda sum_i tau_i;
- TIES (Yadav et al., NeurIPS 2023): trim each tau_i to its top-k % magnitudes, elect the sign
  of each entry by the sum of the trimmed values, average the values agreeing with it (disjoint
  mean), theta = theta_0 + lambda * that; k = 20;
- MagMax (Marczak et al., ECCV 2024): per entry the tau_i of the largest magnitude,
  theta = theta_0 + lambda * that, lambda = 0.5;
- LiNeS (Wang et al., ICLR 2025): theta = theta_0 + (alpha + beta (l-1)/(L-1)) tau in block l of
  L (alpha outside the blocks), post hoc on a run's model (``--method lines``) or on the merged
  vector of the others (``--lines``).

Continual setting (MagMax's protocol): runs made with ``--keep-checkpoints all`` keep theta(t)
after every task t; the merged model at stage t uses tau_s = theta(s) - theta_0 for s = 1..t, so
the merged run has a full accuracy matrix (rows 0..T) and is evaluated like a run into
``OUT/<sequence>/<name>/seed<N>/``. Several runs of one sequence from one initial model (other
seeds or strategies) pool their task vectors stage by stage. Only the encoder is merged; the task
heads are the runs' stage-t heads (their mean, as a uniform soup's). The default lambdas, the
differences from the official code and what is refused: the command's epilog and README "Model
merging".

vectors.py and lines.py are pure functions; make.py reads the runs with the soup's machinery
(benchmark/soup/ingredients.py), builds the evaluation as a soup does (soup/evaluate.py) and
writes the run folder. The command, its options and their help: benchmark/commands/merge.py.
"""

METHOD_NAMES = ("task_arithmetic", "ties", "magmax", "lines")
