#!/usr/bin/python3
"""Generate Python gRPC stubs for the integration tests: gen-pystubs.py OUTDIR PROTO_ROOT PROTO..."""
import os
import shutil
import sys

from grpc_tools import protoc

out, root, protos = sys.argv[1], sys.argv[2], sys.argv[3:]
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
rel = [os.path.relpath(os.path.abspath(p), root) for p in protos]
if protoc.main(["protoc", f"-I{root}", f"--python_out={out}", f"--grpc_python_out={out}", *rel]) != 0:
    sys.exit("protoc failed")
for d, _, files in os.walk(out):
    if "__init__.py" not in files:
        open(os.path.join(d, "__init__.py"), "w").close()
