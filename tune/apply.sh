#!/bin/sh
# Thin wrapper: `sudo tune/apply.sh --apply --cpus 2,3,4`. apply.py needs only the standard library,
# so the system python3 works under sudo; PYTHON=... picks another interpreter.
exec "${PYTHON:-python3}" "$(dirname "$0")/apply.py" "$@"
