#!/usr/bin/env bash
# `cmake --install` puts the app, the libraries, the public headers and monosem.pc in a prefix,
# and a program using all three headers builds against the installed tree through pkg-config.
set -eu
build=$1
prefix="${MS_TEST_TMP:?}/install"
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/monosem include/monosem/io.h include/monosem/job.h include/monosem/model.h include/monosem/sae.h \
         lib/libmsio.a lib/libmsjob.a lib/libmsmodel.a lib/libmssae.a lib/pkgconfig/monosem.pc; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
cat > "$MS_TEST_TMP/consumer.c" <<'C'
#include <monosem/io.h>
#include <monosem/job.h>
#include <monosem/model.h>
#include <monosem/sae.h>
#include <stdio.h>
int main(void)
{
    ms_config c;
    ms_err e = {0};
    if (ms_config_init_defaults(&c, &e)) return 1;
    printf("%s %s %lld\n", MS_VERSION_STRING, ms_status_str(MS_OK), (long long)c.sae.d_sae);
    ms_config_free(&c);
    return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
mpicc -std=c11 "$MS_TEST_TMP/consumer.c" -o "$MS_TEST_TMP/consumer" \
  $(pkg-config --cflags monosem) $(pkg-config --static --libs monosem)
out=$("$MS_TEST_TMP/consumer")
[ "$out" = "$("$prefix/bin/monosem" --version | awk '{print $2}') ok 4096" ] || { echo "FAIL: consumer printed '$out'"; exit 1; }
echo "1 passed, 0 failed"
