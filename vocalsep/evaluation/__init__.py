"""Scoring separated stems (museval BSSEval v4, MDX global SDR), gating and the HTML report.

``metrics`` imports no TensorFlow: museval's scoring is usable (and testable) on its own.
"""
