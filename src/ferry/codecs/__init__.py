"""Wire formats <-> ``dict[str, numpy.ndarray]``: OIP V2 JSON and binary, KServe V1 JSON."""
