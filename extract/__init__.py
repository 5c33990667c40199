"""Extraction stage: decode videos once, detect shots, sample clips, embed them with frozen
backbones, write HDF5.

Modules: `video` (decoding, PyAV) and `decoder` (in a process of its own), `shots` (TransNetV2,
fixed segments), `clips` (sampling, cut while a shot is open), `frames` (frames held and prepared
on demand), `backbones` (the registry, one declaration file per library), `memory` (allocator
and micro-batches), `processor` (one video's work), `video_loop` (the per-video loop and its
failure records), `config` (a run's options), `outputs` (its feature files: plan, reuse,
assembly), `pipeline` (the run: resume, shards, fault isolation), `stop` (signals), `store` and
`merge` (commits and shard parts), `study` (a study's variants), `shot_export`, `weights`,
`encode` (the one video writer), `demo_data` and `fuzz` (broken videos for robustness runs),
`cli`.
"""
