#!/usr/bin/env bash
# Runs the real dotnet-counters tool against the TransparentMigration example and checks that the
# CdmUserMem meter's counters, gauges and histograms appear in what it collects.
set -euo pipefail
check_name="counters check"
source "$(dirname "$0")/../check-steps.sh"

# dotnet-counters comes from the NuGet feed this machine uses, as any dotnet tool does.
step "dotnet tool install" dotnet tool install dotnet-counters --version 10.0.750501 --tool-path "$work/tools"
step "dotnet build" dotnet build "$root/examples/TransparentMigration" -c Release --nologo
# dotnet-counters starts the example itself, suspended until the session is up, so nothing it does
# (its first touches come in its first second) happens before the collector listens.
"$work/tools/dotnet-counters" collect --counters CdmUserMem --format csv -o "$work/counters.csv" -- \
  dotnet "$root/examples/TransparentMigration/bin/Release/net10.0/TransparentMigration.dll" --seconds 8 \
  >"$work/collect.log" 2>&1 || { cat "$work/collect.log"; exit 1; }
# (dotnet-counters does not pass on the child's output; the example's own checks run in the test suite.)

status=0
for counter in cdmusermem.faults cdmusermem.pages.migrated cdmusermem.bytes.copied cdmusermem.refusals \
               cdmusermem.node.used cdmusermem.node.free cdmusermem.mappings.in_use \
               cdmusermem.fault.service_time cdmusermem.migration.batch_time; do
  if ! grep -q "$counter" "$work/counters.csv"; then
    echo "counters check: $counter missing from what dotnet-counters collected"
    status=1
  fi
done
# The migrated-pages counter must be counting, not just present.
if ! awk -F, '/cdmusermem.pages.migrated/ { if ($NF + 0 > 0) found = 1 } END { exit !found }' "$work/counters.csv"; then
  echo "counters check: cdmusermem.pages.migrated never rose above 0"
  status=1
fi
echo "counters check: dotnet-counters collected $(grep -c CdmUserMem "$work/counters.csv") CdmUserMem rows, e.g.:"
grep -E "pages.migrated|fault.service_time|batch_time" "$work/counters.csv" | tail -n 8
[ $status -eq 0 ] && echo "counters check: passed"
exit $status
