#!/usr/bin/env bash
# Sets up the machine (install.sh) and runs every test; ends with "N passed, N failed, N skipped".
# Exits non-zero when a test failed or the run produced no results.
set -uo pipefail
cd "$(dirname "$0")/.."
./install.sh || { echo "test.sh: install.sh failed" >&2; exit 2; }

results=out/test-results
rm -rf "$results"; mkdir -p "$results"
dotnet test tests/Brickfs.Tests.csproj -c Release --nologo \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" --blame-hang-timeout 15m
status=$?

trx="$results/results.trx"
if [ ! -f "$trx" ]; then echo "test.sh: no test results (dotnet test exited $status)" >&2; echo "0 passed, 0 failed"; exit 2; fi
counters=$(grep -o '<Counters [^>]*>' "$trx")
num() { echo "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
passed=$(num passed); failed=$(num failed); total=$(num total); executed=$(num executed)
errors=$(num error); timeouts=$(num timeout); aborted=$(num aborted)
failed=$(( ${failed:-0} + ${errors:-0} + ${timeouts:-0} + ${aborted:-0} ))
skipped=$(( ${total:-0} - ${executed:-0} ))
echo "${passed:-0} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
