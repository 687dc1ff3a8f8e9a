#!/usr/bin/env bash
# Packs CdmUserMem, checks what the package carries, then restores it from a local folder feed into a
# fresh console project that faults and migrates pages, and checks the program's output.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dotnet pack "$root/src/CdmUserMem/CdmUserMem.csproj" -c Release -o "$work/feed" --nologo -v quiet
package=$(ls "$work"/feed/CdmUserMem.*.nupkg)
version=$(basename "$package" .nupkg); version=${version#CdmUserMem.}
contents=$(unzip -Z1 "$package")
for entry in lib/net10.0/CdmUserMem.dll lib/net10.0/CdmUserMem.Interop.dll lib/net10.0/CdmUserMem.xml \
             runtimes/linux-x64/native/libcdmengine.so build/native/include/cdm_engine.h README.md; do
  grep -qx "$entry" <<<"$contents" || { echo "package check: $entry missing from $(basename "$package")"; exit 1; }
done
echo "package check: $(basename "$package") carries the assemblies, XML docs, native engine, header and README"

# A package cache of its own, so an older build of the same version cannot stand in for this one.
export NUGET_PACKAGES="$work/packages"
mkdir "$work/app"
cd "$work/app"
dotnet new console --name PackageConsumer --output . >/dev/null
cat > nuget.config <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="cdmusermem-local" value="$work/feed" />
  </packageSources>
</configuration>
CONFIG
dotnet add package CdmUserMem --version "$version" >/dev/null
cp "$root/tests/package/Program.cs.txt" Program.cs
output=$(dotnet run -c Release 2>&1) || { echo "$output"; echo "package check: the consumer failed"; exit 1; }
echo "$output"
grep -qx "faults True, migrated 1024 pages to gpu0, intact True" <<<"$output" &&
  grep -qx "fault service latency recorded: True" <<<"$output" ||
  { echo "package check: unexpected output from the consumer"; exit 1; }
echo "package check: passed"
