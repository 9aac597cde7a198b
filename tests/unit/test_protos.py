"""The checked-in gRPC stubs are what grpcio-tools makes of the .proto files now:
an edited .proto without `make protos` fails here, not in a client."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parents[2] / "src"
PROTOS = Path("ferry/grpc/protos")


def test_the_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    (tmp_path / PROTOS).mkdir(parents=True)
    for proto in ("model_config.proto", "grpc_service.proto"):
        shutil.copy(SRC / PROTOS / proto, tmp_path / PROTOS / proto)
    for proto, services in (("model_config.proto", False), ("grpc_service.proto", True)):
        args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
        if services:
            args.append(f"--grpc_python_out={tmp_path}")
        assert protoc.main([*args, str(tmp_path / PROTOS / proto)]) == 0
    generated = sorted(p.name for p in (tmp_path / PROTOS).glob("*_pb2*"))
    assert generated == sorted(p.name for p in (SRC / PROTOS).glob("*_pb2*"))
    for name in generated:
        assert (tmp_path / PROTOS / name).read_text() == (SRC / PROTOS / name).read_text(), f"run make protos: {name}"
