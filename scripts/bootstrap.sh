#!/usr/bin/env bash
# Create .venv and install vpt-advisor with its test dependencies, from nothing but Python.
# Idempotent: a second run only checks what is installed.
# The torch pins are what CI and this project's machines use (CPU machines, local wheels);
# pyproject.toml keeps loose ranges for users.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_PIN=${TORCH_PIN:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q --disable-pip-version-check $TORCH_PIN
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
