#!/usr/bin/env bash
# Set up everything tritonkit needs on a fresh Debian/Ubuntu machine (root or sudo for apt).
# Idempotent: safe to run again. Called by `make setup` (and so by `make demo`, `make test`).
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# perf_analyzer (from the tritonclient[all] wheel) links libb64.
if ! ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d'; then
  apt_install libb64-0d
fi
# Prometheus and promtool (Debian's prometheus 2.42, in /usr/bin): the observability tests check the
# written rules with promtool and run every dashboard and rule query on a real Prometheus scraping
# the bundled tritonserver. The tests start their own Prometheus on loopback; the package's service
# (listening on all addresses, port 9090) is not needed, so where systemd runs it is disabled again.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus
  if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true; fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
# checkov scans the Kubernetes manifests in the tests; its pins conflict with the venv's, so it gets
# a venv of its own inside $VENV (found there by tests/test_deploy_k8s.py).
if [ ! -x "$VENV/checkov/bin/checkov" ]; then
  "$PYTHON" -m venv "$VENV/checkov"
  "$VENV/checkov/bin/python" -m pip install -q checkov==3.3.30
fi
# NVIDIA Model Analyzer (tests/server/test_model_analyzer.py and the bench's tune_vs_model_analyzer
# ratio run it on tritonkit repositories): it pins numpy 2 and a newer tritonclient, so it gets a venv
# of its own too (found there by benchmarks/model_analyzer.py).
if [ ! -x "$VENV/model-analyzer/bin/model-analyzer" ]; then
  "$PYTHON" -m venv "$VENV/model-analyzer"
  "$VENV/model-analyzer/bin/python" -m pip install -q triton-model-analyzer==1.58.0
fi
# The pins must hold together (ultralytics and its dependencies beside the Triton client, DALI, torch).
"$VENV/bin/python" -m pip check
# numpy must stay < 2 where the bundled python backend runs (it passes empty tensors with 2.x).
"$VENV/bin/python" -c "import numpy, sys; sys.exit(0 if numpy.__version__.startswith('1.') else 'numpy must be < 2, found ' + numpy.__version__)"
echo "setup done: $("$VENV/bin/python" -c 'import tritonkit; print("tritonkit", tritonkit.__version__)')"
