#!/usr/bin/python3
"""Check that each built package depends on what the modules it ships run with.

    check-module-depends.py DEB...

Each .deb is unpacked (dpkg-deb -x) and its Depends read (dpkg-deb -f). For each module folder
under usr/lib/*/call-assistant/modules in that package, the program its `command` starts (an
interpreter such as /usr/bin/python3 or node, or a script's #! line; ELF programs are covered by
dpkg-shlibdeps) and, for Python modules, every module they import that is neither in the
standard library nor in the module's own folder, are traced to the Debian package that ships
them (dpkg -S). Each of those packages must be in that package's Depends. call-assistant itself
must install from Debian 12's archive: its Depends must not name what Debian 12 lacks
(NOT_IN_DEBIAN_12; a module needing it goes into its own package, call-assistant-module-<name>).
Prints "ok - ..." / "not ok - ..." and "N passed, N failed".
"""

import ast
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

# Interpreters a module command may start, and the package to depend on for each (the
# package that provides the command under that name, not the versioned one dpkg -S names).
INTERPRETERS = {"python3": "python3", "node": "nodejs", "npm": "npm", "sh": None, "bash": None}
PYTHON = "/usr/bin/python3"
# What call-assistant (the main package) must not depend on: Debian 12's archive has only
# nodejs 18, and the Node modules need >= 20.
MAIN_PACKAGE = "call-assistant"
NOT_IN_DEBIAN_12 = {"nodejs": "Debian 12 ships nodejs 18"}

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


def check_modules(package, root, depends):
    """The modules under ROOT (PACKAGE's unpacked tree) against its DEPENDS; their count."""
    manifests = sorted(glob.glob(os.path.join(root, "usr/lib/*/call-assistant/modules/**/module.yaml"),
                                 recursive=True))
    for manifest in manifests:
        folder = os.path.dirname(manifest)
        with open(manifest) as f:
            m = yaml.safe_load(f)
        name = m.get("name", folder)
        interp, problem = interpreter_of(folder, str(m.get("command", "")))
        if interp is None:
            check(False, f"{package}: module {name}: cannot tell what its command runs: {problem}")
            continue
        need = {}
        if interp:
            if interp not in INTERPRETERS:
                check(False, f"{package}: module {name}: interpreter '{interp}' unknown: add it to INTERPRETERS "
                             f"in {sys.argv[0]} with its Debian package")
                continue
            if INTERPRETERS[interp]:
                need[INTERPRETERS[interp]] = f"runs {interp}"
        if interp.startswith("python"):
            for mod in python_imports(folder):
                pkg, origin = python_package_of(mod)
                if not pkg:
                    check(False, f"{package}: module {name}: imports '{mod}', which no installed Debian package "
                                 f"provides for {PYTHON}")
                    continue
                need[pkg] = f"imports {mod} ({origin})"
        for pkg, why in sorted(need.items()):
            check(pkg in depends, f"{package}: module {name} {why}: Depends has {pkg}")
    return len(manifests)


def main():
    debs = sys.argv[1:]
    if not debs:
        print(__doc__, file=sys.stderr)
        return 2
    shipped = {}
    for deb in debs:
        package = subprocess.run(["dpkg-deb", "-f", deb, "Package"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        field = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True,
                               check=True).stdout.strip()
        depends = depends_names(field)
        with tempfile.TemporaryDirectory(prefix="check-module-depends-") as root:
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
            shipped[package] = check_modules(package, root, depends)
        if package == MAIN_PACKAGE:
            for name, why in sorted(NOT_IN_DEBIAN_12.items()):
                check(name not in depends, f"{package}: Depends has no {name} ({why}): '{field}'")
    check(MAIN_PACKAGE in shipped and shipped[MAIN_PACKAGE] > 0,
          f"{MAIN_PACKAGE} ships modules ({shipped.get(MAIN_PACKAGE, 0)})")
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
