"""The straightforward batch scoring script issue 17 compares ``hyperserve batch`` against: orjson
per line, numpy, ``model.predict`` on batches of 64, orjson out (one JSON line per instance).

    python bench/peers/batch_script.py MODEL.joblib INPUT.jsonl OUTPUT.jsonl
"""

import sys
import time

import joblib
import numpy as np
import orjson


def main(model_path: str, input_path: str, output_path: str, batch_size: int = 64) -> None:
    model = joblib.load(model_path)
    started = time.perf_counter()
    rows = 0
    with open(input_path, "rb") as source, open(output_path, "wb") as sink:
        batch = []

        def flush():
            predictions = model.predict(np.array(batch, dtype=np.float64))
            sink.write(b"".join(orjson.dumps({"instance": i, "prediction": p}) + b"\n"
                                for i, p in zip(batch, predictions.tolist())))

        for line in source:
            if line.isspace():
                continue
            batch.append(orjson.loads(line))
            rows += 1
            if len(batch) == batch_size:
                flush()
                batch = []
        if batch:
            flush()
    elapsed = time.perf_counter() - started
    print(orjson.dumps({"instances": rows, "elapsed_s": round(elapsed, 3), "rows_per_s": round(rows / elapsed, 1)})
          .decode())


if __name__ == "__main__":
    main(*sys.argv[1:4])
