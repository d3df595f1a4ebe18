"""The TFX pipeline: ``create_pipeline`` (pipeline.py), its configuration (config.py) and
thin runners: local (LocalDagRunner) and Kubeflow (pipeline.yaml, recurring runs)."""

ORCHESTRATORS = ("local", "kfp-local")
"""Where a run executes: TFX's LocalDagRunner in this process, or the compiled pipeline.yaml
under kfp.local with every step in the image (``kfp_local_runner``)."""
BEAM_RUNNERS = ("direct", "portable", "flink", "dataflow")
"""Where a compiled pipeline's ExampleGen and Transform run (``kubeflow_runner.beam_args``)."""
FLINK_ENVIRONMENTS = ("external", "docker")
"""Where Flink runs our DoFns: SDK workers from each task manager's worker-pool sidecar
(``vocalsep-beam-worker-pool``, k8s/flink) or a container of the image's Beam SDK target per
worker, started by the task manager's Docker."""
LOCAL_BEAM_RUNNERS = ("direct", "portable")
"""Where ExampleGen and Transform run in a run on this machine: Beam's DirectRunner in local
processes, or the portable runner with every DoFn in SDK workers of the image (``portable``)."""
