#!/bin/sh
# Make sure Debian's `prometheus` (and promtool) is installed for the tests that start a real
# Prometheus. Installs it with apt when it is missing and we are root (CI); otherwise says so and
# those tests are skipped with the reason. Never leaves a Prometheus service running: the
# package's own service is kept from starting (policy-rc.d) and stopped if systemd started it.
set -u
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-prometheus: prometheus is not installed and this is not root with apt: its tests are skipped" >&2
    exit 0
fi
echo "ensure-prometheus: installing Debian's prometheus package" >&2
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q prometheus >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q prometheus >/dev/null; }
status=$?
[ "$made_policy" = 1 ] && rm -f "$policy"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-node-exporter; do
        systemctl stop "$unit" >/dev/null 2>&1 || true
        systemctl disable "$unit" >/dev/null 2>&1 || true
    done
fi
[ "$status" = 0 ] || echo "ensure-prometheus: apt-get install prometheus failed: its tests are skipped" >&2
exit 0
