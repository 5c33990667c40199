"""Probe stage: train cheap probes on cached clip features and compare backbones.

Imports only the shared format and manifest modules (vtl), never the extraction stack.

Modules, each one idea, in dependency order:

- `probe.metrics`: the reference's PR-AUC metrics (μAP, mAP, wAP, sAP, per label); pure.
- `probe.models`: DIViTA, linear, MLP, simple-average and GRU probes; `build_probe(name, ...)`.
- `probe.config`: `TrainConfig`, one run's settings, with the reference's defaults.
- `probe.data`: open and cross-check feature files, splits, clip windows, in-memory or
  streaming clip stores.
- `probe.evaluate`: window logits, fusion, per-video scores, checkpoints,
  `evaluate_checkpoint`, `predict`.
- `probe.train`: `train_probe` (one features x probe x split x seed cell) and `run_grid`
  (every split and seed, mean ± std).
- `probe.transferability`: training-free scores (LogME, H-score, kNN) and rank correlation.
- `probe.trailers12k`: import the reference work's published Trailers12k features.
- `probe.matrix`: the transferability matrix (feature files x probes, fusions, scores; cached
  cells, parallel jobs); `probe.plots` draws its heatmap and cost plot.
- `probe.synthetic`: learnable synthetic feature files for tests and benchmarks.
- `probe.cli`: the `probe` console script (train, eval, predict, matrix, score,
  import-trailers12k).
"""
