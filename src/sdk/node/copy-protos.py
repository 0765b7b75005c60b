#!/usr/bin/python3
"""Copy the module contract's .proto files into a Node module's build folder (OUTDIR/proto),
where module-runtime.js loads them at run time with @grpc/proto-loader.

usage: copy-protos.py OUTDIR --proto-root DIR --health HEALTH_PROTO PROTO...
"""

import argparse
import os
import shutil
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--health", required=True)
    ap.add_argument("protos", nargs="+")
    args = ap.parse_args()

    root = os.path.abspath(args.proto_root)
    dest = os.path.join(os.path.abspath(args.outdir), "proto")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".proto-", dir=os.path.dirname(dest)) as tmp:
        out = os.path.join(tmp, "proto")
        for p in args.protos:
            p = os.path.abspath(p)
            if os.path.commonpath([p, root]) != root:
                sys.exit(f"copy-protos: {p} is not under --proto-root {root}")
            target = os.path.join(out, os.path.relpath(p, root))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(p, target)
        health = os.path.join(out, "grpc", "health", "v1", "health.proto")
        os.makedirs(os.path.dirname(health), exist_ok=True)
        shutil.copyfile(args.health, health)
        # Swap in as a whole (no stale file survives a removed .proto); ninja tracks the folder.
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.rename(out, dest)
        os.utime(dest)


if __name__ == "__main__":
    main()
