"""``hyperserve batch``: Vertex AI batch prediction on one machine, against an endpoint, or on Ray.

A job is a reader → predictor → writer pipeline (../shared/CONTRACTS.md §6):

- ``records``: the input files' framing (JSON lines, CSV, TFRecord, file lists), indexed into shards;
- ``instances``: each record → the instance Vertex would send (instanceConfig, the ``{"data"}`` wrap);
- ``predictors``: a request of instances → one prediction per instance, in process through the
  data plane, or POSTed to a running server;
- ``output``: the shards' files, written atomically so that a re-run resumes;
- ``job``: the plan, the shards in order, row-by-row retries, progress and the summary;
- ``ray_engine``: the same shards as Ray Data actors.
"""
