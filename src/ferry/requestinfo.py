"""RequestInfo: what one inference request did and when, filled in as it goes through
the data plane, for the access log (model, version) and tracing (the span times). It is
made only when one of them is on: otherwise the data plane is handed None and records
nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestInfo:
    protocol: str = ""
    model: str = ""
    version: str = ""  # the version that answered ("" if none did)
    # time.perf_counter_ns() marks; 0 when the request never got that far
    started: int = field(default_factory=time.perf_counter_ns)
    decoded: int = 0  # decoded and validated
    queued: int = 0  # entered the model's queue
    computing: int = 0  # its batch's model call began (it left the queue)
    computed: int = 0  # the model call and the split of its outputs ended
    answered: int = 0  # outputs selected and encoded
    batch_size: int = 0  # requests in the batch that computed it
    status: int = 0  # the HTTP status answered, or its equivalent for a gRPC status
