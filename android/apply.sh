#!/usr/bin/env bash
# Puts the app's Android files into the project `cargo tauri android init` generated
# (app-tauri/gen/android). Run after init, and again after changing a file here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
gen="$here/../app-tauri/gen/android/app/src/main"
if [ ! -d "$gen" ]; then
  echo "no generated Android project: run \`cargo tauri android init\` in app-tauri first" >&2
  exit 1
fi
# The host of login links (the server's public_url), for the verified App Link.
host="${FSM_LINK_HOST:?set FSM_LINK_HOST to the host of the server's public_url, e.g. sync.example.net}"
sed "s/\${fsmLinkHost}/$host/g" "$here/app/src/main/AndroidManifest.xml" > "$gen/AndroidManifest.xml"
for d in values values-en xml; do
  mkdir -p "$gen/res/$d"
  cp "$here/app/src/main/res/$d/"*.xml "$gen/res/$d/"
done
echo "android: manifest, strings and network security config applied to $gen"
