#!/bin/sh
# Make sure Debian's `chromium` is installed for the test that loads `modeldeck serve` in a
# headless browser. Installs it with apt when it is missing and we are root (CI); otherwise says
# so and that test is skipped with the reason.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium is not installed and this is not root with apt: the browser test is skipped" >&2
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; }
[ $? = 0 ] || echo "ensure-chromium: apt-get install chromium failed: the browser test is skipped" >&2
exit 0
