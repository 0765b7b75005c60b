#!/bin/bash
# The RPM spec, checked with Debian's rpm and rpmlint: it parses (rpmspec -P), names the four
# packages, carries the project's version (as debian/changelog does), and rpmlint reports no
# error and no warning (packaging/rpm/rpmlint.toml says which distribution conventions do not
# apply). Prints "N passed, N failed".
#   test-rpm-spec.sh SOURCE_ROOT MESON_VERSION
set -u -o pipefail
src=$1 version=$2
spec=$src/packaging/rpm/call-assistant.spec
passed=0 failed=0
report() { if [[ $1 == 0 ]]; then echo "ok - $2"; passed=$((passed + 1)); else echo "not ok - $2"; failed=$((failed + 1)); fi; }

out=$(rpmspec -P "$spec" 2>&1); rc=$?
report "$rc" "rpmspec -P parses the spec"
[[ $rc == 0 ]] || echo "$out"

names=$(rpmspec -q --qf '%{name} %{version}\n' "$spec" 2>&1 | sort | tr '\n' ' ')
expected="call-assistant $version call-assistant-module-matrix $version libcall-assistant-module $version libcall-assistant-module-devel $version "
[[ $names == "$expected" ]]; report $? "packages and version: '$names' (expected '$expected')"

deb_version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
[[ ${deb_version%-*} == "$version" ]]; report $? "debian/changelog has the same upstream version ($deb_version)"

out=$(rpmlint -c "$src/packaging/rpm/rpmlint.toml" "$spec" 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
[[ $rc == 0 ]] && echo "$out" | grep -q ' 0 errors, 0 warnings'
report $? "rpmlint: 0 errors, 0 warnings"

echo "$passed passed, $failed failed"
((failed == 0))
