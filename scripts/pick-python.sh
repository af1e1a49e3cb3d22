#!/bin/sh
# The interpreter `make` builds .venv with (override: make PYTHON=...).
#
# A distribution's /usr/bin/python3 is built with profile-guided and link-time optimisation;
# pyenv's default build, which is this machine's `python3`, is not. Measured here on the same
# commit, back to back: the parallel part of the suite 256 s against 297 s, a daemon's imports
# 1.38 s of CPU against 1.67 s, a CLI command 0.51 s against 0.61 s. So /usr/bin/python3 is
# taken when it is 3.11 or newer and can make a venv; otherwise `python3` from PATH.
for py in /usr/bin/python3 python3; do
    if "$py" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "$py"
        exit 0
    fi
done
echo python3
