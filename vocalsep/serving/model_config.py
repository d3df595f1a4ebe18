"""TF Serving configuration files: the model config (``--model_config_file``) and batching.

The model config names the model, where its versions are, which versions to load (the newest
N, or pinned ones for a rollback) and version labels (``stable``, ``canary``). The k8s
ConfigMap (``k8s/base/config/models.config``) is this generator's default output plus
comments; a test keeps them equal.

Batching stays off. The ``serving_default`` signature takes one unbatched waveform
``[samples, 2]``; TF Serving's batcher concatenates concurrent requests along dimension 0,
which for this signature would splice several songs into one waveform (and differing lengths
would be padded into it). Requests are already large (a block is tens of seconds of audio), so
batching would gain little. ``batching_parameters`` exists so the decision is explicit: it
writes a file that keeps every request alone, should a deployment pass
``--enable_batching`` for other models on the same server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_NUM_VERSIONS = 2


def model_server_config(
    name: str,
    base_path: str,
    *,
    num_versions: int = DEFAULT_NUM_VERSIONS,
    versions: Sequence[int] = (),
    labels: Mapping[str, int] | None = None,
) -> model_server_config_pb2.ModelServerConfig:
    """One model's ModelServerConfig: the newest ``num_versions``, or exactly ``versions``.

    Pinning ``versions`` is the rollback: only those are loaded, whatever is pushed later.
    ``labels`` may only name versions the server will load, as TF Serving refuses the config
    otherwise; with the ``latest`` policy that cannot be known here, so labels need ``versions``.
    """
    if num_versions < 1:
        raise ValueError(f"num_versions must be >= 1, got {num_versions}")
    labels = dict(labels or {})
    if labels and not versions:
        raise ValueError("version labels need pinned versions: a label must name a loaded one")
    unknown = {label: version for label, version in labels.items() if version not in versions}
    if unknown:
        raise ValueError(f"labels name versions that are not loaded: {unknown}")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=name, base_path=base_path, model_platform="tensorflow"
    )
    if versions:
        model.model_version_policy.specific.versions.extend(sorted(set(versions)))
    else:
        model.model_version_policy.latest.num_versions = num_versions
    for label, version in sorted(labels.items()):
        model.version_labels[label] = version
    return config


def model_config_text(
    name: str,
    base_path: str,
    *,
    num_versions: int = DEFAULT_NUM_VERSIONS,
    versions: Sequence[int] = (),
    labels: Mapping[str, int] | None = None,
) -> str:
    """``model_server_config`` as the text protobuf ``--model_config_file`` reads."""
    config = model_server_config(
        name, base_path, num_versions=num_versions, versions=versions, labels=labels
    )
    return text_format.MessageToString(config)


def batching_parameters(num_batch_threads: int = 1, max_enqueued_batches: int = 16) -> str:
    """A ``--batching_parameters_file`` (text BatchingParameters) that never merges requests.

    ``max_batch_size 1`` keeps each waveform alone (see the module docstring for why); the
    queue bounds how many requests wait instead of failing fast with UNAVAILABLE.
    """
    if num_batch_threads < 1 or max_enqueued_batches < 1:
        raise ValueError("num_batch_threads and max_enqueued_batches must be >= 1")
    return (
        "max_batch_size { value: 1 }\n"
        "batch_timeout_micros { value: 0 }\n"
        f"num_batch_threads {{ value: {num_batch_threads} }}\n"
        f"max_enqueued_batches {{ value: {max_enqueued_batches} }}\n"
    )
