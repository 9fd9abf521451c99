#!/bin/sh
# Debian packages napari needs headless: Xvfb + Mesa for an OpenGL context, and the X/xcb
# libraries Qt's xcb platform plugin loads. (QT_QPA_PLATFORM=offscreen gives napari no OpenGL.)
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    python3-venv xvfb xauth libgl1-mesa-dri libegl1 libglib2.0-0 libxkbcommon0 \
    libxkbcommon-x11-0 libdbus-1-3 libfontconfig1 libxcb-icccm4 libxcb-image0 \
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
    libxcb-shape0 libxcb-cursor0 libxcb-xkb1 >/dev/null
