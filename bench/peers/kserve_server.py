"""KServe peer: kserve.Model subclasses the way KServe's docs write custom models. The v1 protocol
gets {"instances"}; the Open Inference Protocol v2 (REST, binary where the client sends it, and
gRPC on --grpc_port) gets kserve's InferRequest, answered with an InferResponse."""

import argparse
import base64

import joblib
import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import get_predict_input


def v2_response(request: InferRequest, name: str, model_name: str, result: np.ndarray) -> InferResponse:
    output = InferOutput(name=name, shape=list(result.shape), datatype=_datatype(result))
    output.set_data_from_numpy(result, binary_data=bool(request.parameters and
                                                         request.parameters.get("binary_data_output")))
    return InferResponse(response_id=request.id or "", model_name=model_name, infer_outputs=[output],
                         use_binary_outputs=bool(request.parameters and request.parameters.get("binary_data_output")))


def _datatype(array: np.ndarray) -> str:
    from kserve.utils.numpy_codec import from_np_dtype

    return from_np_dtype(array.dtype)


class SklearnModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            return v2_response(payload, "predictions", self.name, self.model.predict(get_predict_input(payload)))
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


class OnnxModel(kserve.Model):
    """An ONNX model on onnxruntime (KServe itself sends ONNX to Triton; this is its Python route)."""

    def __init__(self, name: str, path: str):
        super().__init__(name)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.ready = True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            return v2_response(payload, self.output, self.name, self.session.run([self.output], {self.input: x})[0])
        x = np.asarray(payload["instances"], dtype=np.float32)
        return {"predictions": self.session.run([self.output], {self.input: x})[0].tolist()}


class MeanColourModel(kserve.Model):
    """W3: {"instances": [{"b64": ...}]} → the mean colour of each 224×224×3 image."""

    def __init__(self, name: str):
        super().__init__(name)
        self.ready = True

    def predict(self, payload, headers=None):
        out = []
        for inst in payload["instances"]:
            raw = base64.b64decode(inst["b64"])
            out.append(np.frombuffer(raw, dtype=np.uint8).reshape(224, 224, 3).mean(axis=(0, 1)).tolist())
        return {"predictions": out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--kind", choices=("sklearn", "image", "onnx"), default="sklearn")
    args, _ = parser.parse_known_args()
    if args.kind == "sklearn":
        model = SklearnModel(args.model_name, args.model_path)
    elif args.kind == "onnx":
        model = OnnxModel(args.model_name, args.model_path)
    else:
        model = MeanColourModel(args.model_name)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start([model])
