# Sourced by the deploy/* scripts: find the `system2` command and the repository's paths.
# Each script is a thin front for a `system2 ops …` command (see DEPLOY.md).

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$DEPLOY_DIR")"
export S2_FLY_DIR="${S2_FLY_DIR:-$DEPLOY_DIR/fly}"
export S2_RELEASE_LEDGER="${S2_RELEASE_LEDGER:-$DEPLOY_DIR/state/releases.jsonl}"

system2_bin() {
    if [ -n "${SYSTEM2:-}" ]; then
        echo "$SYSTEM2"
    elif command -v system2 >/dev/null 2>&1; then
        command -v system2
    elif [ -x "$REPO_DIR/.venv/bin/system2" ]; then
        echo "$REPO_DIR/.venv/bin/system2"
    else
        echo "deploy: cannot find the system2 command: install the project or set SYSTEM2=" >&2
        exit 127
    fi
}
