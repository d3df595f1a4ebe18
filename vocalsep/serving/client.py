"""A vocalsep model behind TF Serving's gRPC API, callable like a locally loaded model.

Only standard TF Serving behaviour is used, so the same client talks to the production
``tensorflow/serving`` image and to ``vocalsep serve``: ``GetModelMetadata`` to check the
``serving_default`` signature, one ``Predict`` on the ``chunking`` signature to learn the
model's chunk grid, then ``Predict`` per block of audio. The version found at connection time is
pinned, so a version pushed while a song is being separated cannot mix two models in one
output. Whole songs are cut into blocks by ``vocalsep.separator.Separator``, which keeps several
blocks in flight and crossfades them on the model's own grid.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from vocalsep.errors import (
    MessageTooLargeError,
    ServedModelNotFoundError,
    ServerUnavailableError,
    ServingError,
    SignatureMismatchError,
)
from vocalsep.model import saved

DEFAULT_MODEL_NAME = "vocalsep"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""gRPC clients default to a 4 MiB receive limit, far below a block of stereo float32 audio."""
MESSAGE_OVERHEAD_BYTES = 64 * 1024
"""Room left in a message for everything but the samples (names, shapes, model spec)."""
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FLOAT_BYTES = 4
DEFAULT_CONNECT_DEADLINE_S = 20.0

Reply = TypeVar("Reply")


class ServingClient:
    """One served vocalsep model version as a ``StemModel`` for ``Separator``.

    ``deadline_s`` bounds each request including its retries of UNAVAILABLE and
    DEADLINE_EXCEEDED (exponential backoff with jitter); ``connect_deadline_s`` (default: the
    shorter of ``deadline_s`` and 20 s) does the same for the connection-time calls, so a
    server that is down is reported quickly. ``version``
    pins a version number; by default the newest one the server reports is pinned. Calls are
    thread-safe, so ``Separator`` may keep several blocks in flight.
    """

    def __init__(
        self,
        server: str,
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        version: int | None = None,
        deadline_s: float = 300.0,
        connect_deadline_s: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.server = server
        self.model_name = model_name
        self.deadline_s = deadline_s
        self.max_message_bytes = max_message_bytes
        self._channel = grpc.insecure_channel(
            server,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        if connect_deadline_s is None:
            connect_deadline_s = min(deadline_s, DEFAULT_CONNECT_DEADLINE_S)
        try:
            self.version, self.stems = self._check_signature(version, connect_deadline_s)
            self.chunk_length, self.overlap_length, self.sample_rate = self._chunking(
                connect_deadline_s
            )
        except BaseException:
            self._channel.close()
            raise

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def max_block_samples(self) -> int:
        """The longest waveform whose stems still fit in one response message."""
        per_sample = len(self.stems) * 2 * FLOAT_BYTES
        return (self.max_message_bytes - MESSAGE_OVERHEAD_BYTES) // per_sample

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """The stems of a ``[samples, 2]`` 44.1 kHz float32 mixture, computed by the server."""
        waveform = np.ascontiguousarray(waveform, np.float32)
        if waveform.nbytes + MESSAGE_OVERHEAD_BYTES > self.max_message_bytes:
            raise MessageTooLargeError(
                self.server,
                self._model_label(),
                f"a request of {len(waveform)} samples needs {waveform.nbytes / 2**20:.1f} MiB, "
                f"over the {self.max_message_bytes / 2**20:.1f} MiB message limit; use shorter "
                "blocks or a larger limit",
            )
        request = self._request(saved.SIGNATURE_KEY, waveform)
        response = self._call(self._stub.Predict, request, self.deadline_s)
        stems = {name: tf.make_ndarray(response.outputs[name]) for name in self.stems}
        for name, stem in stems.items():
            if stem.shape != waveform.shape:
                raise SignatureMismatchError(
                    self.server,
                    self._model_label(),
                    f"output {name!r} is shaped {stem.shape}, the input {waveform.shape}",
                )
        return stems

    def _model_label(self) -> str:
        version = getattr(self, "version", None)
        return self.model_name if version is None else f"{self.model_name} version {version}"

    def _request(
        self, signature: str, waveform: np.ndarray, version: int | None = None
    ) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        pinned = self.version if version is None else version
        if pinned is not None:
            request.model_spec.version.value = pinned
        request.inputs[saved.WAVEFORM_INPUT].CopyFrom(tf.make_tensor_proto(waveform))
        return request

    def _check_signature(
        self, version: int | None, deadline_s: float
    ) -> tuple[int, tuple[str, ...]]:
        """The served version and its stems, after checking the waveform-to-stems contract."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self._stub.GetModelMetadata, request, deadline_s)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signatures):
            raise SignatureMismatchError(self.server, self.model_name, "no signature_def metadata")
        served_version = response.model_spec.version.value
        label = f"{self.model_name} version {served_version}"
        missing = {saved.SIGNATURE_KEY, saved.CHUNKING_SIGNATURE_KEY} - set(
            signatures.signature_def
        )
        if missing:
            raise SignatureMismatchError(
                self.server,
                label,
                f"no signature {', '.join(sorted(missing))}; it was not exported by vocalsep",
            )
        signature = signatures.signature_def[saved.SIGNATURE_KEY]
        problems = [
            f"input {name!r} is {description}"
            for name, description in _waveform_problems(signature.inputs).items()
        ]
        if set(signature.inputs) != {saved.WAVEFORM_INPUT}:
            problems.append(f"inputs are {sorted(signature.inputs)}, expected ['waveform']")
        problems += [
            f"output {name!r} is {description}"
            for name, description in _waveform_problems(signature.outputs).items()
        ]
        if not signature.outputs:
            problems.append("it has no outputs")
        if problems:
            raise SignatureMismatchError(
                self.server,
                label,
                f"{saved.SIGNATURE_KEY} is not waveform [samples, 2] float32 to stems: "
                + "; ".join(problems),
            )
        stems = tuple(sorted(signature.outputs, key=lambda name: (name != "vocals", name)))
        return served_version, stems

    def _chunking(self, deadline_s: float) -> tuple[int, int, int]:
        request = self._request(saved.CHUNKING_SIGNATURE_KEY, np.zeros((1, 2), np.float32))
        response = self._call(self._stub.Predict, request, deadline_s)
        values = {}
        for name in saved.CHUNKING_OUTPUTS:
            if name not in response.outputs:
                raise SignatureMismatchError(
                    self.server, self._model_label(), f"chunking signature has no {name!r}"
                )
            values[name] = int(tf.make_ndarray(response.outputs[name]))
        return tuple(values[name] for name in saved.CHUNKING_OUTPUTS)  # type: ignore[return-value]

    def _call(self, method: Callable[..., Reply], request: object, deadline_s: float) -> Reply:
        """Calls ``method``, retrying transient failures until ``deadline_s`` has passed."""
        give_up = time.monotonic() + deadline_s
        backoff = 0.1
        while True:
            remaining = give_up - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as error:
                code = error.code()
                remaining = give_up - time.monotonic()
                if code in RETRIED_CODES and remaining > 0:
                    time.sleep(min(backoff * random.uniform(0.5, 1.0), remaining))
                    backoff = min(backoff * 2, 5.0)
                    continue
                raise self._error(code, error.details() or "", deadline_s) from None

    def _error(self, code: grpc.StatusCode, details: str, deadline_s: float) -> ServingError:
        label = self._model_label()
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServerUnavailableError(
                self.server,
                label,
                f"server unavailable for {deadline_s:g} s ({details}); is the model server "
                "running at that address?",
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServerUnavailableError(
                self.server, label, f"no answer within the {deadline_s:g} s deadline"
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return ServedModelNotFoundError(self.server, label, f"model not served ({details})")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return MessageTooLargeError(
                self.server,
                label,
                f"{details}; the {self.max_message_bytes / 2**20:.1f} MiB message limit is too "
                "small for these blocks",
            )
        return ServingError(self.server, label, f"{code.name}: {details}")


def _waveform_problems(tensors: object) -> dict[str, str]:
    """What is wrong, per tensor name, with tensors that should be float32 ``[samples, 2]``."""
    problems = {}
    for name, info in tensors.items():  # type: ignore[attr-defined]
        dims = [dim.size for dim in info.tensor_shape.dim]
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype != tf.float32 or info.tensor_shape.unknown_rank or dims != [-1, 2]:
            problems[name] = f"{dtype.name} {dims}"
    return problems
