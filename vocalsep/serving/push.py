"""Pushing models where TF Serving finds them: ``<base>/<model name>/<integer version>/``.

The stock TFX Pusher does the copying (``<base_directory>/<int(time)>/``, ``saved_model.pb``
last); this module wires it and reads the resulting layout for the dev server and for the
Evaluator's "compare with what is served" gate. Paths go through ``tf.io.gfile``, so a base
directory in a bucket (``gs://...``) works as a local one does.
"""

from __future__ import annotations

from typing import Any

SAVED_MODEL_FILE = "saved_model.pb"


def _join(*parts: str) -> str:
    """Joins with "/" on local paths and URLs alike (``gs://`` has no os.path)."""
    return "/".join([parts[0].rstrip("/"), *parts[1:]])


def model_directory(base: str, model_name: str) -> str:
    """Where the versions of ``model_name`` live: TF Serving's ``base_path`` for it."""
    return _join(str(base), model_name)


def pusher(
    model: Any,
    serving_base: str,
    model_name: str,
    model_blessing: Any | None = None,
) -> Any:
    """The stock TFX Pusher writing ``model`` to ``<serving_base>/<model_name>/<version>/``.

    ``model`` (and ``model_blessing``, when given) are channels, e.g. ``trainer.outputs
    ['model']``; without a blessing every model is pushed, which suits only manual pushes.
    """
    from tfx import v1 as tfx

    return tfx.components.Pusher(
        model=model,
        model_blessing=model_blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=model_directory(serving_base, model_name)
            )
        ),
    )


def is_complete_version(version_dir: str) -> bool:
    """Whether a version directory holds a whole SavedModel.

    The Pusher copies ``saved_model.pb`` last, so its presence means the rest is there; the
    variables index is checked too, for copies made by other means.
    """
    from tensorflow.io import gfile

    if not gfile.exists(_join(version_dir, SAVED_MODEL_FILE)):
        return False
    variables = _join(version_dir, "variables")
    return not gfile.isdir(variables) or gfile.exists(_join(variables, "variables.index"))


def list_versions(base: str, model_name: str) -> list[int]:
    """Complete versions of ``model_name`` under ``base``, oldest first.

    Names that are not non-negative integers (staging folders, notes) are ignored, as TF
    Serving ignores them.
    """
    from tensorflow.io import gfile

    directory = model_directory(base, model_name)
    if not gfile.isdir(directory):
        return []
    names = (entry.rstrip("/") for entry in gfile.listdir(directory))
    return sorted(
        int(name)
        for name in names
        if name.isdigit() and is_complete_version(_join(directory, name))
    )


def latest_version_dir(base: str, model_name: str) -> str | None:
    """The newest complete version directory of ``model_name``: the one TF Serving serves."""
    versions = list_versions(base, model_name)
    if not versions:
        return None
    return _join(model_directory(base, model_name), str(versions[-1]))
