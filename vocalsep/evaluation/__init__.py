"""Scoring separated stems (museval BSSEval v4, MDX global SDR), gating and the HTML report.

``metrics`` imports no TensorFlow, so the process pool that runs museval starts quickly.
"""
