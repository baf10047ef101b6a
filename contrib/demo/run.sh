#!/bin/sh
# make demo: see contrib/demo/demo.py.
set -eu
exec python3 "$(dirname "$0")/demo.py"
