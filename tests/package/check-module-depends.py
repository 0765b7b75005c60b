#!/usr/bin/python3
"""Check that a built call-assistant package depends on what its bundled modules run with.

    check-module-depends.py PACKAGE_ROOT DEPENDS

PACKAGE_ROOT is the package's unpacked tree (dpkg-deb -x), DEPENDS its Depends field. For each
module folder under usr/lib/*/call-assistant/modules, the program its `command` starts (an
interpreter such as /usr/bin/python3 or node, or a script's #! line; ELF programs are covered by
dpkg-shlibdeps) and, for Python modules, every module they import that is neither in the
standard library nor in the module's own folder, are traced to the Debian package that ships
them (dpkg -S). Each of those packages must be in DEPENDS. Prints "ok - ..." / "not ok - ..."
and "N passed, N failed".
"""

import ast
import glob
import os
import re
import shlex
import subprocess
import sys

import yaml

# Interpreters a module command may start, and the package to depend on for each (the
# package that provides the command under that name, not the versioned one dpkg -S names).
INTERPRETERS = {"python3": "python3", "node": "nodejs", "npm": "npm", "sh": None, "bash": None}
PYTHON = "/usr/bin/python3"

results = []


def check(ok, what):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} - {what}")


def depends_names(field):
    names = set()
    for part in field.split(","):
        for alt in part.split("|"):
            name = alt.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


def package_of(path):
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout.split(":")[0].split(",")[0].strip()


def interpreter_of(folder, command):
    argv = shlex.split(command)
    if argv and argv[0] == "exec":
        argv = argv[1:]
    if not argv:
        return None, "empty command"
    prog = argv[0]
    if "/" not in prog:
        return os.path.basename(prog), None
    if prog.startswith("/"):
        return os.path.basename(prog), None
    path = os.path.join(folder, prog)
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        return None, f"{prog}: {e}"
    if head.startswith(b"\x7fELF"):
        return "", None  # shared libraries: dpkg-shlibdeps
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n")[0].decode().split()
        if line and os.path.basename(line[0]) == "env" and len(line) > 1:
            return os.path.basename(line[1]), None
        return (os.path.basename(line[0]) if line else None), None
    return None, f"{prog}: neither an ELF program nor a #! script"


def python_imports(folder):
    names = set()
    for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    local = {os.path.splitext(n)[0] for n in os.listdir(folder)}
    # Full dotted names: "google.protobuf" finds its package where "google" is a namespace
    # that several packages share.
    return sorted(n for n in names
                  if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] not in local)


def python_package_of(name):
    code = ("import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); "
            "print(s.origin if s and s.origin not in (None, 'namespace') else "
            "(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else ''))")
    out = subprocess.run([PYTHON, "-c", code, name], capture_output=True, text=True)
    origin = out.stdout.strip()
    return (package_of(origin), origin) if origin else (None, None)


def main():
    root, depends = sys.argv[1], depends_names(sys.argv[2])
    manifests = sorted(glob.glob(os.path.join(root, "usr/lib/*/call-assistant/modules/**/module.yaml"),
                                 recursive=True))
    check(len(manifests) > 0, f"the package ships modules ({len(manifests)})")
    for manifest in manifests:
        folder = os.path.dirname(manifest)
        with open(manifest) as f:
            m = yaml.safe_load(f)
        name = m.get("name", folder)
        interp, problem = interpreter_of(folder, str(m.get("command", "")))
        if interp is None:
            check(False, f"module {name}: cannot tell what its command runs: {problem}")
            continue
        need = {}
        if interp:
            if interp not in INTERPRETERS:
                check(False, f"module {name}: interpreter '{interp}' unknown: add it to INTERPRETERS "
                             f"in {sys.argv[0]} with its Debian package")
                continue
            if INTERPRETERS[interp]:
                need[INTERPRETERS[interp]] = f"runs {interp}"
        if interp.startswith("python"):
            for mod in python_imports(folder):
                pkg, origin = python_package_of(mod)
                if not pkg:
                    check(False, f"module {name}: imports '{mod}', which no installed Debian package "
                                 f"provides for {PYTHON}")
                    continue
                need[pkg] = f"imports {mod} ({origin})"
        for pkg, why in sorted(need.items()):
            check(pkg in depends, f"module {name} {why}: Depends has {pkg}")
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
