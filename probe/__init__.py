"""Probe stage: train cheap probes on cached clip features and compare backbones.

Imports only the shared format and manifest modules (vtl), never the extraction stack.
"""
