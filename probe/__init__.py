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
- `probe.cotrain`: CoVeR-style co-training across collections (one body, a head per
  collection) and fine-tuning from another collection's checkpoint (`--init-from`).
- `probe.sweep`, `probe.stacked`: the sweep protocol, a grid of heads trained at once.
- `probe.scores_extra`: NCE, LEEP, SFDA and PARC; `probe.recommend`: a recommendation from a
  sample (bootstrap, guardrails); `probe.recommend_inputs` gathers what it needs (quick probes
  through the run cache, priors, the collection's size), `probe.recommend_report` renders it.
- `probe.transferability`: training-free scores (a registry: LogME, H-score, kNN) and rank
  correlation.
- `probe.trailers12k`: import the reference work's published Trailers12k features.
- `probe.catalogue`: the feature files behind reports (discovery, `FileInfo`, and the checks
  that they describe one dataset with usable splits).
- `probe.tasks`: the tasks behind reports (probe runs, scores, file checks), their shared cache,
  and running them in worker processes and shards.
- `probe.report`: csv, json and Markdown writers that the matrix and studies share.
- `probe.stats`: paired tests (sign-flip permutation, paired t-test); pure.
- `probe.plots`: the matrix's heatmap and cost plot, and a study's differences.
- `probe.matrix`: the transferability matrix (feature files x probes, fusions, scores);
  `probe.matrix_report` renders it (csv, Markdown, json, pictures).
- `probe.study`: a study's variants against its baseline, paired over splits and seeds;
  `probe.study_report` renders it.
- `probe.synthetic`: learnable synthetic feature files for tests and benchmarks.
- `probe.options`: the command line's shared options, declared once (torch-free).
- `probe.cli`: the `probe` console script (train, eval, predict, matrix, study, score,
  import-trailers12k).
"""
