#!/usr/bin/env bash
# Refresh the dashboard's vendored JavaScript from the npm registry: elkjs (the Eclipse
# Layout Kernel), its single-file browser build lib/elk.bundled.js and its licence.
# Bump ELKJS_VERSION here, run this script, look at the dashboard, and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

ELKJS_VERSION=0.11.1
DEST=orchestrator/edge/static/vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "elkjs@$ELKJS_VERSION" >/dev/null && tar -xzf "elkjs-$ELKJS_VERSION.tgz")
mkdir -p "$DEST"
cp "$work/package/lib/elk.bundled.js" "$DEST/elk.bundled.js"
cp "$work/package/LICENSE.md" "$DEST/elk.LICENSE.md"
echo "elkjs $ELKJS_VERSION (EPL-2.0), from npm pack elkjs@$ELKJS_VERSION" > "$DEST/README"
echo "vendored elkjs $ELKJS_VERSION into $DEST"
