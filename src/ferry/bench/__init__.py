"""``ferry bench``: a load generator for any Open Inference Protocol server (Ferry, Triton,
KServe, MLServer), like Triton's perf_analyzer.

    options      the command line's values: concurrency levels, durations, the target
    metadata     the model's inputs, read from the server (REST or gRPC)
    requests     one request body per protocol, built once from random data or a file
    rest_driver  HTTP/1.1 keep-alive connections over plain asyncio streams
    grpc_driver  ModelInfer calls over grpc.aio with the message serialised once
    runner       drives each concurrency level: warm-up, measured window, progress line
    report       percentiles, the table, CSV and JSON
    command      ties them together and turns failures into exit codes
"""
