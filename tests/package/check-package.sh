#!/usr/bin/env bash
# Packs CdmUserMem, checks what the package carries, then restores it from a local folder feed into a
# fresh console project that faults and migrates pages, and checks the program's output.
set -euo pipefail
check_name="package check"
source "$(dirname "$0")/../check-steps.sh"

# A version no other feed has, so the restore can only take this build (and no older one from the cache).
version="0.4.0-check.$(date +%Y%m%d%H%M%S).$$"
step "dotnet pack" dotnet pack "$root/src/CdmUserMem/CdmUserMem.csproj" -c Release -o "$work/feed" --nologo -p:Version="$version"
package="$work/feed/CdmUserMem.$version.nupkg"
contents=$(unzip -Z1 "$package")
for entry in lib/net10.0/CdmUserMem.dll lib/net10.0/CdmUserMem.Interop.dll lib/net10.0/CdmUserMem.xml \
             runtimes/linux-x64/native/libcdmengine.so runtimes/linux-x64/native/libcdmmalloc.so \
             build/native/include/cdm_engine.h build/native/include/cdm_heap.h README.md; do
  grep -qx "$entry" <<<"$contents" || { echo "package check: $entry missing from $(basename "$package")"; exit 1; }
done
echo "package check: $(basename "$package") carries the assemblies, XML docs, native engine, preloadable malloc, headers and README"

mkdir "$work/app"
cd "$work/app"
step "dotnet new console" dotnet new console --name PackageConsumer --output .
cat > nuget.config <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="cdmusermem-local" value="$work/feed" />
  </packageSources>
</configuration>
CONFIG
step "dotnet add package" dotnet add package CdmUserMem --version "$version"
cp "$root/tests/package/Program.cs.txt" Program.cs
step "dotnet run" dotnet run -c Release
output=$(cat "$work/step.log")
echo "$output"
grep -q "faults True, migrated 1024 pages to gpu0, intact True" <<<"$output" &&
  grep -q "fault service latency recorded: True" <<<"$output" ||
  { echo "package check: unexpected output from the consumer"; exit 1; }
echo "package check: passed"
