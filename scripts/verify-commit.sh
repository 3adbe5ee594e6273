#!/usr/bin/env bash
# Checks that HEAD (or the staged tree, with --staged) builds and passes
# `make lint test` in a clean clone, as CI would see it.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
dir=$(mktemp -d /tmp/cgsem-verify.XXXXXX)
trap 'rm -rf "$dir"' EXIT
if [ "${1:-}" = --staged ]; then
	git -C "$top" diff --cached --binary > "$dir.patch"
	git clone -q "$top" "$dir/src"
	git -C "$dir/src" apply --index "$dir.patch" 2>/dev/null || true
	rm -f "$dir.patch"
else
	git clone -q "$top" "$dir/src"
fi
cd "$dir/src"
make lint test ${MAKEARGS:-}
