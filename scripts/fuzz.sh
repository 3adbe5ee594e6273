#!/usr/bin/env bash
# Runs every fuzz target of the module briefly: $1 is a -fuzztime, default
# 20000x (a count: duration budgets hit golang/go#75804 on Go 1.26).
set -euo pipefail
fuzztime=${1:-20000x}
cd "$(dirname "$0")/.."
status=0
while IFS= read -r line; do
	dir=${line%%:*}
	name=${line#*:}
	pkg=./$(dirname "$dir")
	echo "fuzz: $pkg $name ($fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
		status=1
	fi
done < <(grep -rHo --include='*_test.go' -E '^func (Fuzz[A-Za-z0-9_]+)\(' . | grep -v '/bench/' | sed -E 's/^([^:]+):func (Fuzz[A-Za-z0-9_]+)\(/\1:\2/' | sort -u)
exit $status
