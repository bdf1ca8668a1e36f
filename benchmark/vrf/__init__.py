"""VRF and a calibrated fixed-weight output ensemble (``ose``, not the paper's OSE) as evaluation
kinds: Zhu, Cui & Zhang, "Robust Fine-tuning of Zero-shot Models via Variance Reduction",
NeurIPS 2024, arXiv:2411.06966 (official code: BeierZhu/VRF).

VRF changes predictions, not features: it ensembles, per test image, the fine-tuned classifier
(the current encoder + task j's trained head) with the zero-shot one (the PRETRAINED encoder + the
text tower's class weights scaled by CLIP's logit scale), weighting the fine-tuned side by how close
the image lies to the training images that only fine-tuning got right. After every stage t >= 1,
for every task j <= t (docs/design.md section 9):

- ZSF set: the training images of task j that the zero-shot model gets wrong and the fine-tuned
  model gets right; their L2-normalised fine-tuned features are kept. "Training images" are the
  probe's train subset minus its validation part (the images fine-tuning sees, up to
  ``--probe-max-train``), whose features the evaluation has already extracted: no extra pass.
- d(x): squared L2 distance from x's normalised fine-tuned feature to its K-th nearest ZSF
  neighbour, K = round(|ZSF| / |train| * 1000) as the official code computes it
  (``src/knn_distance.py``: ``K = round(ratio * 1000)``, Python's round; faiss ``IndexFlatL2``
  returns squared distances). K is not clipped. The 1000 comes from ImageNet's 1.28 M training
  images: K / |ZSF| is about 1000 / |train|, so on smaller datasets the K-th neighbour is a far
  one (about 30 % of the ZSF set on DTD). Where no K-th neighbour exists, d = inf and w = 0,
  so the prediction is the zero-shot one:
  - K > |ZSF| (only if |train| < 1000): as the official code, whose faiss search fills missing
    neighbours with FLT_MAX, of weight exactly 0;
  - K = 0 (|ZSF| <= |train| / 2000, an empty ZSF set included): the official code fails (faiss
    asserts K > 0); cfbench's choice.
  Either case is said on stdout (``note: stage t, task: VRF's K ...``).
- w(x) = sigmoid(-(d(x) - a) / b), a = 1.5, b = 0.6 (``src/main.py`` ``weight``; tuned by the
  authors on ImageNet with ViT-B/16).
- prediction: argmax of w softmax(z_ft / T_ft) + (1 - w) softmax(z_zs / T_zs). The temperatures
  make the mean max-softmax confidence equal the accuracy (``src/models/calibration.py``: a search
  in [0.1, 10], widened by factors of 1.1 while the target lies outside, to a gap of 0.001). The
  official code calibrates on ImageNet's test split; here both are calibrated on the validation
  part, never on test.
- ``ose``: NOT the paper's OSE, but a calibrated fixed-weight output ensemble: the same formula
  with a fixed w = ``ose_weight`` (0.5) and the same calibrated temperatures, so that the two
  kinds differ only by w(x). The paper's OSE (``src/baselines.py``) ensembles the plain softmaxes
  (no temperatures) with a weight picked from 0.1..0.9 on the ID test split; tuning on test is not
  an option here.

Not recorded: stage 0 (the fine-tuned model is the zero-shot model there), tasks not trained yet
(j > t: their head is the zero-shot head), and controls: a control has no fine-tuned head, so
there is no second classifier to ensemble with (its "VRF" would be its zero-shot accuracy, which
``zs`` row 0 already holds); what VRF cannot change on a control, the features, ``lp`` measures.

The zero-shot side is fixed for a run: the pretrained encoder's logits are taken from stage 0's
features where stage 0 extracted them, else computed once per task by a frozen copy of the
pretrained encoder that the evaluator holds on the CPU (after a resume, or when row 0 came from the
cache), which it drops once every task's zero-shot side is known.

The pure functions (the ZSF set, k, the k-th neighbour distance, w, the temperatures, the
ensemble) are in functions.py; the measure the evaluation runs (``vrf`` and ``ose`` are kinds of
benchmark/kinds.py, measured like the others: benchmark/measures.py), and what a run asks for, in
evaluator.py.
"""
