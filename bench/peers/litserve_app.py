"""Baseline (d): LitServe with onnxruntime and its request batching on.

One LitAPI per model at /v2/models/{name}/infer, so the V2 JSON body the other servers
take works unchanged. Run as ``python -m bench.peers.litserve_app PORT``."""

import sys

import litserve as ls
import numpy as np

from bench.peers.common import MODEL_NAMES, session

# Tuning: LitServe's batching per model, as for MLServer in its model-settings.json (the
# runner's other knobs are in bench/servers.py). Waiting longer helps the compute-bound CNN.
MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_S = {"mlp": 0.002, "cnn": 0.01}


class OnnxAPI(ls.LitAPI):
    def __init__(self, model_name: str) -> None:
        super().__init__(
            max_batch_size=MAX_BATCH_SIZE,
            batch_timeout=BATCH_TIMEOUT_S[model_name],
            api_path=f"/v2/models/{model_name}/infer",
        )
        self.model_name = model_name

    def setup(self, device: str) -> None:
        self.session = session(self.model_name)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    # decode_request and encode_response stay unannotated on purpose: LitServe reads their
    # annotations to build the FastAPI route, and none means "plain JSON in, JSON out", as
    # in LitServe's own examples (a dict annotation would add pydantic validation).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        tensor = request["inputs"][0]
        return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output[:, np.newaxis])

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return {
            "model_name": self.model_name,
            "outputs": [
                {
                    "name": self.output_name,
                    "shape": list(output.shape),
                    "datatype": "FP32",
                    "data": output.ravel().tolist(),
                }
            ],
        }


def main(port: int) -> None:
    server = ls.LitServer([OnnxAPI(name) for name in MODEL_NAMES], accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main(int(sys.argv[1]))
