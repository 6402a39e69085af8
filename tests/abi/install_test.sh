#!/usr/bin/env bash
# install_test.sh BUILD_DIR SOURCE_DIR: install fab into a temporary prefix,
# then build and run a user program twice, once found with CMake's
# find_package(fab) and once with pkg-config, as a user of an installed fab
# would.  Exit 0 only if both programs exchange a message through libfab.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d /tmp/fab-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/fab/fab.h"
test -f "$tmp/prefix/share/man/man7/fab.7"

mkdir "$tmp/user"
cat > "$tmp/user/use.c" <<'C'
#include <fab/fab.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
	char name[32];
	snprintf(name, sizeof name, "inst-%d", (int)getpid());
	fab_fabric *f;
	if (fab_fabric_open(name, FAB_CREATE, &f))
		return 1;
	fab_chan_opts o = {.size = sizeof o, .capacity = 4, .msg_size = 16, .kind = FAB_SPSC};
	fab_chan *c;
	char b[16] = {0};
	int ok = fab_chan_create(f, "c", &o, &c) == 0 && fab_send(c, "hello", 6, NULL) == 0 &&
		 fab_recv(c, b, sizeof b, NULL) == 6 && strcmp(b, "hello") == 0;
	fab_chan_release(c);
	fab_fabric_close(f);
	fab_fabric_destroy(name);
	return ok ? 0 : 2;
}
C
cat > "$tmp/user/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.18)
project(use C)
find_package(fab 1 REQUIRED)
add_executable(use use.c)
target_link_libraries(use PRIVATE fab::fab)
C
cmake -S "$tmp/user" -B "$tmp/user/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/user/b" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/user/b/use"

flags=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs fab)
cc -o "$tmp/user/use2" "$tmp/user/use.c" $flags -Wl,-rpath,"$tmp/prefix/lib"
"$tmp/user/use2"
echo "install_test: find_package and pkg-config users both work"
