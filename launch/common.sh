# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not run). The caller sets
# SCRIPT (its name, for messages) and DRY_RUN (0 or 1).

# Prints a message naming the script and exits with status 2 (bad settings).
die() {
  printf '%s: %s\n' "$SCRIPT" "$*" >&2
  exit 2
}

# Prints a command, quoted so that it can be pasted into a shell, then runs it
# unless --dry-run.
run() {
  local quoted
  printf -v quoted '%q ' "$@"
  printf '+ %s\n' "${quoted% }"
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}
