#!/usr/bin/python3
"""Generate the Python gRPC stubs a Python module imports (build-time helper).

Run by meson (see meson.build here); never commit its output.  It writes two
packages into OUTDIR:

  callassistant/v1/*_pb2.py, *_pb2_grpc.py   from proto/callassistant/v1/*.proto
  grpc_health/v1/health_pb2.py, ..._grpc.py  from Debian's grpc-proto health.proto

health.proto is compiled from a copy placed at grpc_health/v1/health.proto:
compiled at its own path it would become the Python package "grpc.health.v1",
which the installed grpcio package "grpc" shadows.  "grpc_health.v1" is also
the import path of the upstream grpcio-health-checking package, so code written
against these stubs works unchanged with it.  The proto package (and so the
wire name grpc.health.v1.Health) stays the same.

Usage: generate-stubs.py OUTDIR --proto-root DIR --health FILE PROTO...
"""

import argparse
import os
import shutil
import sys
import tempfile

from grpc_tools import protoc


def add_init_files(top):
    """Make every generated folder a regular package (explicit beats namespace
    packages, which any other "callassistant" folder on sys.path could join)."""
    for dirpath, _dirnames, filenames in os.walk(top):
        if "__init__.py" not in filenames:
            with open(os.path.join(dirpath, "__init__.py"), "w") as f:
                f.write("# Generated package marker (generate-stubs.py).\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--proto-root", required=True,
                    help="folder the .proto import paths are relative to")
    ap.add_argument("--health", required=True, help="path of grpc/health/v1/health.proto")
    ap.add_argument("protos", nargs="+")
    args = ap.parse_args()

    outdir = os.path.abspath(args.outdir)
    proto_root = os.path.abspath(args.proto_root)
    os.makedirs(outdir, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=".stubs-", dir=outdir) as tmp:
        src = os.path.join(tmp, "src")
        out = os.path.join(tmp, "out")
        os.makedirs(os.path.join(src, "grpc_health", "v1"))
        os.makedirs(out)
        shutil.copyfile(args.health, os.path.join(src, "grpc_health", "v1", "health.proto"))

        rel = []
        for p in args.protos:
            p = os.path.abspath(p)
            if os.path.commonpath([p, proto_root]) != proto_root:
                sys.exit(f"generate-stubs: {p} is not under --proto-root {proto_root}")
            rel.append(os.path.relpath(p, proto_root))

        # Well-known types (google/protobuf/*.proto) ship inside grpc_tools.
        wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        argv = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{src}", f"-I{wkt}",
                f"--python_out={out}", f"--grpc_python_out={out}",
                "grpc_health/v1/health.proto"] + rel
        rc = protoc.main(argv)
        if rc != 0:
            sys.exit(f"generate-stubs: grpc_tools.protoc failed (exit {rc})")

        # Swap each top-level package in as a whole, so no stale file survives
        # a removed .proto, then bump the folder's mtime: ninja tracks these
        # folders as the custom_target's outputs.
        for top in sorted(os.listdir(out)):
            add_init_files(os.path.join(out, top))
            dest = os.path.join(outdir, top)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.rename(os.path.join(out, top), dest)
            os.utime(dest)


if __name__ == "__main__":
    main()
