"""The TFX pipeline: ``create_pipeline`` (pipeline.py), its configuration (config.py) and
thin runners: local (LocalDagRunner) and Kubeflow (pipeline.yaml, recurring runs)."""

ORCHESTRATORS = ("local", "kfp-local")
"""Where a run executes: TFX's LocalDagRunner in this process, or the compiled pipeline.yaml
under kfp.local with every step in the image (``kfp_local_runner``)."""
