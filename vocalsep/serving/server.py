"""A development model server speaking TF Serving's gRPC API (``vocalsep serve``).

Production runs the ``tensorflow/serving`` image, which cannot run on laptops and CI machines
without Docker; this server implements the parts of its API vocalsep uses
(``PredictionService.Predict`` and ``GetModelMetadata``, ``ModelService.GetModelStatus``)
over the same model base directory, with the same status codes and messages for the errors a
client sees, so client code tested against it is client code that works against TF Serving.

Like TF Serving it polls ``<base>/<model name>/<integer version>/``, loads a version once its
``saved_model.pb`` is present (the Pusher copies that file last; a failed load is retried on
the next poll), runs the version's warm-up requests before serving it, serves the newest
loaded version by default and any loaded version on request, keeps the newest
``num_versions`` versions loaded (TF Serving's ``latest`` policy) and accepts messages up to
2 GiB. What it does not do: batching, version labels, model config files, the REST API.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from vocalsep.serving import push

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2**31 - 1
"""TF Serving's server-side limit (INT32_MAX) for both directions."""
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_REQUESTS = 1000
"""TF Serving reads at most this many warm-up records."""


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code TF Serving would use."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class ServedVersion:
    """One loaded SavedModel version: callable signatures and their protos for metadata."""

    name: str
    version: int
    path: Path
    loaded: Any
    signature_defs: get_model_metadata_pb2.SignatureDefMap

    @classmethod
    def load(cls, name: str, version: int, path: Path) -> ServedVersion:
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in saved_model.meta_graphs[0].signature_def.items():
            signature_defs.signature_def[key].CopyFrom(signature_def)
        served = cls(name, version, path, tf.saved_model.load(str(path)), signature_defs)
        served.warm_up()
        return served

    def warm_up(self) -> None:
        """Runs ``assets.extra/tf_serving_warmup_requests``; a failing request fails the load."""
        warmup = self.path / WARMUP_FILE
        if not warmup.is_file():
            return
        for count, record in enumerate(tf.data.TFRecordDataset(str(warmup))):
            if count == MAX_WARMUP_REQUESTS:
                break
            prediction_log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if prediction_log.HasField("predict_log"):
                self.predict(prediction_log.predict_log.request)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name not in self.loaded.signatures:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        function = self.loaded.signatures[signature_name]
        _, specs = function.structured_input_signature
        if set(request.inputs) != set(specs):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(request.inputs)}!={len(specs)} "
                f"len({{{', '.join(sorted(request.inputs))}}}) != "
                f"len({{{', '.join(sorted(specs))}}})",
            )
        inputs = {}
        for key, spec in specs.items():
            array = tf.make_ndarray(request.inputs[key])
            if array.dtype != spec.dtype.as_numpy_dtype or not spec.shape.is_compatible_with(
                array.shape
            ):
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {key!r} must be {spec.dtype.name} {spec.shape}, got "
                    f"{tf.as_dtype(array.dtype).name} {list(array.shape)}",
                )
            inputs[key] = tf.constant(array)
        try:
            outputs = function(**inputs)
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, error.message) from None
        wanted = list(request.output_filter) or list(outputs)
        unknown = set(wanted) - set(outputs)
        if unknown:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {', '.join(sorted(unknown))}",
            )
        response = predict_pb2.PredictResponse()
        self._describe(response.model_spec, signature_name)
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
        return response

    def _describe(self, model_spec: Any, signature_name: str = "") -> None:
        model_spec.name = self.name
        model_spec.version.value = self.version
        if signature_name:
            model_spec.signature_name = signature_name


class ModelRepository:
    """The versions found under a model base directory, loaded and unloaded as it changes.

    Each subdirectory of ``base`` is a model; its newest ``num_versions`` complete version
    directories are kept loaded. A version is only unloaded while a newer one is loaded, so a
    broken push never leaves a model with nothing to serve.
    """

    def __init__(self, base: Path, num_versions: int = 2) -> None:
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1, got {num_versions}")
        self.base = base
        self.num_versions = num_versions
        self._served: dict[str, dict[int, ServedVersion]] = {}
        self._failed: dict[Path, str] = {}
        self._lock = threading.Lock()

    def poll(self) -> None:
        """Loads new versions, unloads old and deleted ones; safe to call while serving."""
        names = sorted(path.name for path in self.base.iterdir() if path.is_dir())
        for name in set(self._served) - set(names):
            self._unload(name, set(self._served[name]))
        for name in names:
            aspired = push.list_versions(str(self.base), name)[-self.num_versions :]
            for version in reversed(aspired):
                self._load(name, version)
            loaded = set(self._served.get(name, {}))
            if loaded & set(aspired):
                self._unload(name, loaded - set(aspired))

    def _load(self, name: str, version: int) -> None:
        if version in self._served.get(name, {}):
            return
        path = self.base / name / str(version)
        try:
            served = ServedVersion.load(name, version, path)
        except Exception as error:  # any load failure is retried on the next poll
            reason = f"{type(error).__name__}: {error}"
            if self._failed.get(path) != reason:
                log.warning("cannot load %s (will retry): %s", path, reason)
            self._failed[path] = reason
            return
        self._failed.pop(path, None)
        with self._lock:
            self._served.setdefault(name, {})[version] = served
        log.warning("serving model %s version %d from %s", name, version, path)

    def _unload(self, name: str, versions: set[int]) -> None:
        if not versions:
            return
        with self._lock:
            for version in versions:
                del self._served[name][version]
            if not self._served[name]:
                del self._served[name]
        gc.collect()
        for version in sorted(versions):
            log.warning("unloaded model %s version %d", name, version)

    def find(self, model_spec: Any) -> ServedVersion:
        """The version a request's model spec names: the newest unless a version is given."""
        name = model_spec.name
        with self._lock:
            versions = dict(self._served.get(name, {}))
        if model_spec.HasField("version"):
            version = model_spec.version.value
            if version not in versions:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Specific({name}, {version})",
                )
            return versions[version]
        if model_spec.version_label:
            raise RequestError(
                grpc.StatusCode.UNIMPLEMENTED,
                "version labels are not supported by vocalsep serve; ask for a version number",
            )
        if not versions:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})"
            )
        return versions[max(versions)]

    def versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._served.get(name, {}))


def _aborting(method: Any) -> Any:
    """Turns a RequestError into the gRPC status the client receives."""

    def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except RequestError as error:
            context.abort(error.code, error.message)

    return handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    @_aborting
    def Predict(  # noqa: N802 - gRPC method name
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self.repository.find(request.model_spec).predict(request)

    @_aborting
    def GetModelMetadata(  # noqa: N802 - gRPC method name
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        unsupported = set(request.metadata_field) - {"signature_def"}
        if unsupported:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Metadata field {', '.join(sorted(unsupported))} is not supported",
            )
        served = self.repository.find(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        served._describe(response.model_spec)
        response.metadata["signature_def"].Pack(served.signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    @_aborting
    def GetModelStatus(  # noqa: N802 - gRPC method name
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        name = request.model_spec.name
        versions = self.repository.versions(name)
        if request.model_spec.HasField("version"):
            wanted = request.model_spec.version.value
            if wanted not in versions:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {wanted} of model {name}"
                )
            versions = [wanted]
        if not versions:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            response.model_version_status.add(
                version=version, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
            )
        return response


def build_server(repository: ModelRepository, address: str, max_workers: int = 8) -> grpc.Server:
    """The gRPC server with both services, bound to ``address`` but not started."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers, thread_name_prefix="predict"),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC shares ports between processes by default: a second server would silently
            # take half the connections of one already running instead of failing.
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(repository), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(repository), server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address}: address in use or not local")
    return server


def serve(
    model_base: str | Path,
    port: int = 8500,
    *,
    host: str = "127.0.0.1",
    poll_seconds: float = 2.0,
    num_versions: int = 2,
    max_workers: int = 8,
) -> None:
    """Serves every model under ``model_base`` until SIGINT or SIGTERM, then stops cleanly.

    Like TF Serving, the versions present at start are loaded before the port opens.
    """
    base = Path(model_base)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: model base directory does not exist")
    repository = ModelRepository(base, num_versions)
    repository.poll()
    address = f"{host}:{port}"
    server = build_server(repository, address, max_workers)
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    server.start()
    log.warning("vocalsep serve: gRPC on %s, models under %s", address, base)
    try:
        while not stop.wait(poll_seconds):
            repository.poll()
    finally:
        server.stop(grace=5).wait()
        log.warning("vocalsep serve: stopped")
