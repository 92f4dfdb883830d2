#!/usr/bin/env bash
# Prints the path of a real Python 3.13 (the Lambda runtime `sam build` needs), or explains how to get one.
set -u
works() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1; }
if command -v python3.13 >/dev/null 2>&1 && works "$(command -v python3.13)"; then
  command -v python3.13; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -1)
  if [ -n "$version" ]; then
    candidate="$(pyenv root)/versions/$version/bin/python3.13"
    if works "$candidate"; then echo "$candidate"; exit 0; fi
  fi
fi
echo "make build needs Python 3.13 (the Lambda runtime) for sam build: install it (e.g. 'pyenv install 3.13' or your OS package) and retry" >&2
exit 1
