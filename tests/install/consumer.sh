#!/bin/sh
# consumer.sh BUILD_DIR SOURCE_DIR -- installs kvi into a temporary prefix and
# builds examples/api/hello.c outside the tree twice, with pkg-config and with
# CMake's find_package(kvi); both programs must run and print the same.
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name kvi.pc -path '*pkgconfig*' -exec dirname {} \; | head -n1)
[ -n "$libdir" ] || { echo "kvi.pc not installed"; exit 1; }

# 1. pkg-config
PKG_CONFIG_PATH=$libdir cc -o "$tmp/hello-pc" "$src/examples/api/hello.c" \
    $(PKG_CONFIG_PATH=$libdir pkg-config --cflags --libs kvi)
LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/hello-pc" > "$tmp/out-pc"

# 2. find_package
mkdir -p "$tmp/proj"
cat > "$tmp/proj/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(kvi REQUIRED)
add_executable(hello $src/examples/api/hello.c)
target_link_libraries(hello PRIVATE kvi::kvi)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/proj/build/hello" > "$tmp/out-cm"

grep -q '^passwd_alice = s3cret$' "$tmp/out-pc" || { echo "pkg-config build printed:"; cat "$tmp/out-pc"; exit 1; }
cmp "$tmp/out-pc" "$tmp/out-cm" || { echo "find_package build differs"; exit 1; }
# The installed tree carries the command and its module directory.
[ -x "$tmp/prefix/bin/kvi" ] || { echo "kvi command not installed"; exit 1; }
echo "install consumer OK"
