"""The issue's "thin" reference: a raw ASGI app with orjson and scikit-learn, one predict call per
request, no batching and no validation beyond what the model does."""

import os

import joblib
import numpy as np
import orjson

MODEL = joblib.load(os.environ["BENCH_MODEL_PATH"])
HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "GET":  # readiness
        body, status = b'{"status":"ready"}', 200
    else:
        instances = np.asarray(orjson.loads(b"".join(chunks))["instances"], dtype=np.float64)
        body, status = orjson.dumps({"predictions": MODEL.predict(instances)}, option=orjson.OPT_SERIALIZE_NUMPY), 200
    await send({"type": "http.response.start", "status": status,
                "headers": [*HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
