"""The TFX pipeline: ``create_pipeline`` (pipeline.py), its configuration (config.py) and
thin runners: local (LocalDagRunner) and Kubeflow (pipeline.yaml, recurring runs)."""
