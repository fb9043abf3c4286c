#!/usr/bin/env bash
# Helper of .ci/arm64. Two modes:
#   arm64-guest.sh device SRC OUT     inside the arm64 chroot: venv, pip install "SRC[tflite,onnxruntime]"
#                                     pytest (no torch), the CLI runs, the comparison cases, pytest
#   arm64-guest.sh reference SRC OUT  on the x86 host, the host's venv first on PATH: the CLI runs and the
#                                     comparison cases only
# Both modes write the same files to OUT (see .ci/arm64-compare.py).
set -euo pipefail

MODE=$1 SRC=$2 OUT=$3
T0=$SECONDS
log() { printf '[arm64/%s %4ss] %s\n' "$MODE" "$((SECONDS - T0))" "$*"; }
die() { printf '[arm64/%s %4ss] FAIL: %s\n' "$MODE" "$((SECONDS - T0))" "$*" >&2; exit 1; }
gstep() {
  local name=$1 t=$SECONDS
  shift
  log "-- $name"
  "$@"
  log "-- $name: $((SECONDS - t)) s"
}

# `edgesam demo --json` and `edgesam segment <package sample> --point 250,170 -o seg.png --json`, default
# bundle and backend, from a folder outside the source tree (so the installed package runs).
cli_runs() {
  mkdir -p "$OUT" /tmp/edgesam-cli && cd /tmp/edgesam-cli
  local img
  img=$(python -c 'import edgesam_edge, os; print(os.path.join(os.path.dirname(edgesam_edge.__file__), "data", "astronaut.jpg"))')
  [ -f "$img" ] || die "the installed package has no sample image ($img)"
  # LiteRT on both sides: the x86 host may have OpenVINO too, whose auto precision (bf16) differs by design
  edgesam demo --backend tflite --json -o /tmp/edgesam-cli/demo.png --force >"$OUT/cli-demo.json" \
    || die "edgesam demo --json failed"
  edgesam segment "$img" --point 250,170 --backend tflite --precision fp32 -o /tmp/edgesam-cli/seg.png --json \
    --force >"$OUT/cli-segment.json" \
    || die "edgesam segment $img --point 250,170 -o /tmp/edgesam-cli/seg.png --json failed"
  python - "$OUT" <<'EOF' || die "the CLI's JSON output is not what was expected"
import json, os, sys
for name, png in (("cli-demo", "demo.png"), ("cli-segment", "seg.png")):
    r = json.load(open(os.path.join(sys.argv[1], name + ".json")))
    assert r["objects"] and all(o["area"] > 0 for o in r["objects"]), (name, r)
    assert os.path.getsize(os.path.join("/tmp/edgesam-cli", png)) > 0, png
    o = r["objects"][0]
    print(f"  {name}: backend {r['backend']}, bundle {r['bundle']}, scores {o['scores']}, best {o['best']}, "
          f"area {o['area']} px")
EOF
}
cases() {
  cd /tmp/edgesam-cli
  python "$SRC/.ci/arm64-cases.py" "$OUT" || die "the comparison cases failed"
}

# ------------------------------------------------------------------------------------------- reference
if [ "$MODE" = reference ]; then
  gstep "x86 CLI: edgesam demo --json, edgesam segment --point 250,170 --json" cli_runs
  gstep "x86 comparison cases" cases
  exit 0
fi
[ "$MODE" = device ] || die "unknown mode $MODE"

# --------------------------------------------------------------------------------------------- device
VENV=/opt/venv
export PATH="$VENV/bin:$PATH"
setup() {
  log "$(python3 --version) on $(uname -m), QEMU_CPU=${QEMU_CPU:-?}, $(grep -c ^processor /proc/cpuinfo) CPUs in /proc/cpuinfo ($(grep -m1 'CPU part' /proc/cpuinfo | tr -s '\t ' ' '))"
  # the host's extra CA certificates, copied to /usr/local/share/ca-certificates, into the system bundle
  # (pip uses it: PIP_CERT); both take ~20 s of emulated shell/python: run them side by side
  update-ca-certificates >/tmp/update-ca.log 2>&1 &
  local ca=$!
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed in the guest"
  wait "$ca" || { cat /tmp/update-ca.log; die "update-ca-certificates failed in the guest"; }
  grep -m1 added /tmp/update-ca.log || true
}
pip_install() {
  # pip builds the project in the copy at $SRC (writable); aarch64 wheels from the index. --no-compile:
  # byte-compiling every module of every dependency under emulation costs more than compiling what runs.
  if ! pip install --no-compile "$SRC[tflite,onnxruntime]" pytest >/tmp/pip.log 2>&1; then
    tail -40 /tmp/pip.log
    die "pip install \"$SRC[tflite,onnxruntime]\" pytest failed in the guest"
  fi
  grep '^Successfully installed' /tmp/pip.log || true
  python - <<'EOF'
import importlib.metadata as md
have = []
for n in ["edgesam-edge", "numpy", "opencv-python-headless", "onnxruntime", "ai-edge-litert", "pytest"]:
    try:
        have.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        have.append(f"{n} (not installed)")
print("  installed: " + ", ".join(have))
EOF
}
no_torch() {
  python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    || die "torch is installed in the device venv: a device extra pulled it in"
  log "torch is not installed (as on a device)"
}
run_pytest() {
  cd "$SRC"
  local args=()
  # shellcheck disable=SC2206  # ARM64_PYTEST is a list of words, as on a command line
  [ -n "${ARM64_PYTEST:-}" ] && args=($ARM64_PYTEST)
  log "python -m pytest -q -p no:cacheprovider ${args[*]}"
  local rc=0
  python -m pytest -q -p no:cacheprovider "${args[@]}" || rc=$?
  [ "$rc" = 0 ] || die "pytest exited $rc"
}

gstep "update-ca-certificates, venv" setup
gstep "pip install \"$SRC[tflite,onnxruntime]\" pytest" pip_install
gstep "no torch" no_torch
gstep "CLI: edgesam demo --json, edgesam segment --point 250,170 --json" cli_runs
gstep "comparison cases (same as on x86)" cases
if [ "${ARM64_PYTEST:-}" = none ]; then
  log "pytest: skipped (EDGESAM_ARM64_PYTEST=none)"
else
  gstep "pytest" run_pytest
fi
