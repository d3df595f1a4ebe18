"""Serving: the TFX Pusher layout, TF Serving model config, the gRPC client and a dev server.

``push`` and ``model_config`` are light; ``client`` and ``server`` import TensorFlow and gRPC.
"""
