#!/usr/bin/env bash
# Merges the app's iOS keys into the project `cargo tauri ios init` generated
# (app-tauri/gen/apple), on macOS. Run after init, and again after changing a file here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
gen="$here/../app-tauri/gen/apple"
plist=$(find "$gen" -maxdepth 2 -name Info.plist -path '*_iOS/*' | head -n1)
if [ -z "$plist" ]; then
  echo "no generated iOS project: run \`cargo tauri ios init\` in app-tauri first" >&2
  exit 1
fi
/usr/libexec/PlistBuddy -c "Merge $here/Info.plist" "$plist"
# Universal Links for login links: the server's host (its public_url), checked by iOS against
# /.well-known/apple-app-site-association, which names this app.
host="${FSM_LINK_HOST:?set FSM_LINK_HOST to the host of the server's public_url, e.g. sync.example.net}"
entitlements=$(find "$gen" -maxdepth 2 -name '*.entitlements' -path '*_iOS/*' | head -n1)
sed "s/FSM_LINK_HOST/$host/g" "$here/app.entitlements" > "${entitlements:-$(dirname "$plist")/app_iOS.entitlements}"
for l in fr en; do
  mkdir -p "$(dirname "$plist")/$l.lproj"
  cp "$here/$l.lproj/InfoPlist.strings" "$(dirname "$plist")/$l.lproj/"
done
echo "ios: usage descriptions, URL scheme and translations merged into $plist"
