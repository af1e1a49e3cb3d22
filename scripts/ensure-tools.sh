#!/usr/bin/env bash
# The system tools some tests need, from Debian's packages: installed when missing
# (as root with apt-get, as CI runs), otherwise one line saying how to get them.
set -euo pipefail

needed=()
command -v prometheus >/dev/null 2>&1 || needed+=(prometheus)  # promtool and `up --prometheus` tests
command -v chromium >/dev/null 2>&1 || needed+=(chromium)      # the dashboard's browser test
command -v buildah >/dev/null 2>&1 || needed+=(buildah)        # shiploop build (tests/integration/test_images_build.py)
command -v docker-registry >/dev/null 2>&1 || needed+=(docker-registry)  # the registry it pushes to
command -v busybox >/dev/null 2>&1 || needed+=(busybox-static) # the static binary inside the test images
[ ${#needed[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${needed[*]} (Debian packages the tests use)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
    exit 0
fi
echo "the tests need ${needed[*]}: install with: sudo apt-get install -y ${needed[*]}" >&2
exit 1
