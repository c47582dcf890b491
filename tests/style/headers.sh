#!/usr/bin/env bash
# Every public header compiles on its own (includes what it uses), as C11 with the project's
# warnings: a caller may include any one of them first.
# usage: headers.sh SOURCE_DIR CC
set -u
src=$1; cc=$2
inc=()
for d in "$src"/io/include "$src"/libsae/include "$src"/libmodel/include "$src"/libunits/include "$src"/apps/job/include; do
  inc+=(-I "$d")
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad=0; n=0
for h in "$src"/io/include/monosem/*.h "$src"/libsae/include/monosem/*.h "$src"/libmodel/include/monosem/*.h \
         "$src"/libunits/include/monosem/*.h "$src"/apps/job/include/monosem/*.h; do
  n=$((n + 1))
  printf '#include "monosem/%s"\n' "$(basename "$h")" > "$tmp/t.c"
  if ! "$cc" -std=c11 -Wall -Wextra -Werror -fsyntax-only "${inc[@]}" "$tmp/t.c" 2> "$tmp/err"; then
    echo "FAIL: ${h#$src/} does not compile on its own:"; head -5 "$tmp/err"; bad=$((bad + 1))
  fi
done
echo "headers: $n public headers, $bad that do not compile alone"
[ "$n" -gt 10 ] && [ "$bad" -eq 0 ]
