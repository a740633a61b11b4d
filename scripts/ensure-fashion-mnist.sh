#!/usr/bin/env bash
# Make Fashion-MNIST available to striate: a local copy if there is one, Debian's package when
# running as root, else the official mirrors; when all fail, say in one line what to run.
set -u
BIN=${BIN:-.venv/bin}
if "$BIN/striate" data get fashion-mnist --local-only >/dev/null 2>&1; then
  "$BIN/striate" data get fashion-mnist --local-only
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's dataset-fashion-mnist package"
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist)) &&
    "$BIN/striate" data get fashion-mnist --local-only && exit 0
fi
"$BIN/striate" data get fashion-mnist && exit 0
echo "Fashion-MNIST is not available: run 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or 'striate data get fashion-mnist --from FOLDER' with the four IDX files" >&2
exit 1
