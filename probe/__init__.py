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
- `probe.transferability`: training-free scores (a registry: LogME, H-score, kNN) and rank
  correlation.
- `probe.trailers12k`: import the reference work's published Trailers12k features.
- `probe.cells`: the tasks behind reports (probe runs, scores, file checks), their shared cache,
  and running them in worker processes and shards.
- `probe.report`: csv, json and Markdown writers that the matrix and studies share.
- `probe.stats`: paired tests (sign-flip permutation, paired t-test); pure.
- `probe.matrix`: the transferability matrix (feature files x probes, fusions, scores);
  `probe.plots` draws its heatmap and cost plot, and a study's differences.
- `probe.study`: a study's variants against its baseline, paired over splits and seeds.
- `probe.synthetic`: learnable synthetic feature files for tests and benchmarks.
- `probe.cli`: the `probe` console script (train, eval, predict, matrix, study, score,
  import-trailers12k).
"""
