# Sourced by the CI checks: a scratch folder removed on exit, and `step`, which runs a command with its
# output kept in "$work/step.log" and shows that output only if the command fails. Set check_name first.
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() {
  local name=$1; shift
  if ! "$@" >"$work/step.log" 2>&1; then
    cat "$work/step.log"
    echo "$check_name: $name failed"
    exit 1
  fi
}
