"""The Open Inference Protocol over gRPC (``GRPCInferenceService``), health and reflection."""
