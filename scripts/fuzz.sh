#!/usr/bin/env bash
# The fuzz harnesses (fuzz/, docs/fuzzing.md): set up what they need, build,
# run, and fail on any finding.
#
#   scripts/fuzz.sh TARGET SECONDS [-- LIBFUZZER_ARGS...]   one harness, for SECONDS
#   scripts/fuzz.sh TARGET --runs N [-- ...]                 one harness, N executions (CI)
#   scripts/fuzz.sh all SECONDS | all --runs N               every harness in turn
#   scripts/fuzz.sh setup                                    install and build only
#   scripts/fuzz.sh repro TARGET FILE...                     run a harness on given inputs
#   scripts/fuzz.sh merge TARGET                             add what .venv-fuzz/corpus/TARGET reaches
#                                                            beyond fuzz/corpus/TARGET to it
# TARGETs: http asgi cqe resp (atheris, over the C extensions built with
# clang -fsanitize=fuzzer-no-link,address,undefined) and resp_scan writers
# (plain C libFuzzer binaries, -fsanitize=fuzzer,address,undefined).
#
# On a fresh Debian 12 it installs clang-14 and libclang-rt-14-dev with apt
# (as root), makes .venv-fuzz/ with atheris built from source against that
# clang's libFuzzer, copies the working tree to .venv-fuzz/src/ and builds the
# extensions there -- never touching .venv/ or the tree's own build/. What a
# run finds is written to .venv-fuzz/findings/TARGET/ and the run exits
# non-zero; new corpus entries go to .venv-fuzz/corpus/TARGET/ (the
# committed fuzz/corpus/TARGET/ is only read).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TARGETS=(http asgi cqe resp resp_scan writers)
PY_TARGETS=" http asgi cqe resp "
CLANG=${CLANG:-clang-14}
CLANGXX=${CLANGXX:-clang++-14}
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv-fuzz
ATHERIS_VERSION=3.0.0
SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { echo "fuzz: $*" >&2; }

# -- setup -------------------------------------------------------------------

install_clang() {
    local rt
    rt=$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null || true)
    if command -v "$CLANG" >/dev/null && command -v "$CLANGXX" >/dev/null && [ -n "$rt" ]; then
        return
    fi
    log "installing clang-14 and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes)"
    if [ "$(id -u)" != 0 ]; then
        echo "fuzz: run as root, or first: apt-get install -y clang-14 libclang-rt-14-dev" \
             "python3-venv python3-dev" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq clang-14 libclang-rt-14-dev python3-venv python3-dev >/dev/null
}

make_venv() {
    local stamp=$VENV/.deps-atheris-$ATHERIS_VERSION
    [ -f "$stamp" ] && return
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        echo "fuzz: uringio needs Python 3.11; set PYTHON to one" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
    "$VENV/bin/pip" install -q cffi httptools wsproto
    # From source, so that its libFuzzer is this clang's and it makes
    # asan_with_fuzzer.so, the runtime the instrumented extensions load with
    # (atheris' native_extension_fuzzing.md). atheris calls "clang" and
    # "clang++": a folder of links gives it the versioned ones.
    mkdir -p "$VENV/clang-bin"
    ln -sf "$(command -v "$CLANG")" "$VENV/clang-bin/clang"
    ln -sf "$(command -v "$CLANGXX")" "$VENV/clang-bin/clang++"
    log "building atheris $ATHERIS_VERSION from source (a few minutes)"
    PATH="$VENV/clang-bin:$PATH" CLANG_BIN="$(command -v "$CLANG")" CC=clang CXX=clang++ \
        "$VENV/bin/pip" install -q --no-binary atheris "atheris==$ATHERIS_VERSION"
    touch "$stamp"
}

atheris_dir() { "$VENV/bin/python" -c 'import atheris; print(atheris.path())'; }

# The working tree as it is now, copied to .venv-fuzz/src/, and its
# extensions built there with the fuzzer's instrumentation (only when a C
# source or setup.py changed since the last build).
build_extensions() {
    local src=$VENV/src
    mkdir -p "$src"
    git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
    # FUZZ_PATCHES="a.patch b.patch": applied to the copy only (patch -p1), to
    # fuzz on past a finding whose fix has not landed yet.
    local p
    for p in ${FUZZ_PATCHES:-}; do
        patch -s -d "$src" -p1 <"$p"
    done
    local hash
    hash=$(cd "$src" && find _build setup.py pyproject.toml -type f \( -name '*.c' -o -name '*.h' \
           -o -name '*.py' -o -name '*.toml' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum)
    if [ -f "$src/.built" ] && [ "$(cat "$src/.built")" = "$hash" ]; then
        return
    fi
    # --force: the copy keeps the tree's mtimes, so a source put back as it
    # was (a patch dropped) can be older than the extension built from it.
    log "building the extensions instrumented (clang, fuzzer-no-link,address,undefined)"
    (cd "$src" && env -u URINGIO_SANITIZE CC="$CLANG" \
        CFLAGS="-fsanitize=fuzzer-no-link $SAN_FLAGS" LDFLAGS="-fsanitize=fuzzer-no-link $SAN_FLAGS" \
        "$VENV/bin/python" setup.py -q build_ext --inplace --force >"$VENV/build.log" 2>&1) || {
        tail -40 "$VENV/build.log" >&2
        exit 1
    }
    echo "$hash" >"$src/.built"
}

# The plain C harnesses: fuzz/TARGET.c -> .venv-fuzz/bin/fuzz-TARGET, built
# against the copy in .venv-fuzz/src/ (so FUZZ_PATCHES apply to them too).
build_c() {
    local target=$1 out=$VENV/bin/fuzz-$1 src=$ROOT/fuzz/$1.c tree=$VENV/src
    local deps=("$src")
    local extra=()
    case $target in
        resp_scan) deps+=("$tree/_build/protocols/resp_scan.c") ;;
        writers)
            # uring_helpers.c and liburing's headers as the extension build has them.
            local lib=$tree/build/liburing-$(sed -n 's/^Version:[[:space:]]*//p' \
                "$tree/_build/vendor/liburing/liburing.spec")
            deps+=("$tree/_build/_core/uring_helpers.c" "$tree/_build/_core/uring_pumps.c"
                   "$tree/_build/_core/uring_shared.h")
            extra=(-I"$lib/src/include" -I"$tree/_build/vendor/liburing/src/include"
                   -I"$tree/_build/_core" -DUIO_LIBURING_VERSION='"fuzz"' "$lib/liburing.a") ;;
    esac
    local newer=0 dep
    for dep in "${deps[@]}"; do [ "$dep" -nt "$out" ] && newer=1; done
    [ $newer = 1 ] || [ ! -x "$out" ] || return 0
    log "building fuzz-$target"
    mkdir -p "$VENV/bin"
    "$CLANG" -O1 -fsanitize=fuzzer $SAN_FLAGS -I"$tree/_build" "$src" "${extra[@]}" -o "$out"
}

setup() {   # setup [TARGET...]: what those targets need (all by default)
    install_clang
    make_venv
    build_extensions   # (also the liburing that fuzz-writers links)
    local t
    for t in "${@:-${TARGETS[@]}}"; do
        [[ $PY_TARGETS == *" $t "* ]] || build_c "$t"
    done
}

# -- running -------------------------------------------------------------------

# The command line of a target's fuzzer, less the corpus folders.
fuzzer_cmd() {
    local target=$1
    if [[ $PY_TARGETS == *" $target "* ]]; then
        # asan_with_fuzzer.so: ASan (with UBSan's handlers) and libFuzzer, loaded
        # first; PYTHONMALLOC=malloc so that ASan sees every Python object.
        # (The harness runs as a program: libFuzzer's -merge starts it again
        # by its argv[0], with this environment -- the venv's python first.)
        CMD=(env LD_PRELOAD="$(atheris_dir)/asan_with_fuzzer.so" PYTHONMALLOC=malloc
             PYTHONPATH="$VENV/src" PATH="$VENV/bin:$PATH" "$ROOT/fuzz/${target}_fuzz.py")
    else
        CMD=("$VENV/bin/fuzz-$target")
    fi
    CMD+=(-timeout=30 -rss_limit_mb=4096 -print_final_stats=1 -max_len="$(max_len "$target")")
    [ -f "$ROOT/fuzz/dicts/$target.dict" ] && CMD+=(-dict="$ROOT/fuzz/dicts/$target.dict")
    return 0
}

max_len() {
    case $1 in
        http|asgi) echo 4096 ;;
        resp|resp_scan) echo 2048 ;;
        *) echo 1024 ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:handle_abort=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

run_one() {   # run_one TARGET LIMIT_ARG [EXTRA...]
    local target=$1 limit=$2
    shift 2
    local work=$VENV/corpus/$target findings=$VENV/findings/$target
    mkdir -p "$work" "$findings" "$ROOT/fuzz/corpus/$target"
    fuzzer_cmd "$target"
    log "$target: ${limit#-}"
    local start=$SECONDS rc=0
    "${CMD[@]}" "$limit" -artifact_prefix="$findings/" "$@" "$work" "$ROOT/fuzz/corpus/$target" \
        >"$VENV/$target.log" 2>&1 || rc=$?
    local stats
    stats=$(grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+ +DONE)' \
            "$VENV/$target.log" | tr '\n' ' ')
    if [ $rc != 0 ]; then
        tail -60 "$VENV/$target.log" >&2
        log "$target: FAILED (exit $rc) after $((SECONDS - start)) s; log $VENV/$target.log," \
            "inputs in $findings/"
        return 1
    fi
    log "$target: ok in $((SECONDS - start)) s: $stats"
}

main() {
    [ $# -ge 1 ] || usage
    local target=$1
    shift
    case $target in
        setup) setup; return ;;
        repro)
            [ $# -ge 2 ] || usage
            setup "$1"
            fuzzer_cmd "$1"
            shift
            "${CMD[@]}" -runs=1 "$@"
            return ;;
        merge)
            # The inputs of .venv-fuzz/corpus/TARGET that reach code the
            # committed corpus does not, added to it (libFuzzer -merge=1:
            # the committed files, seeds and regress-* inputs, stay as they
            # are). -use_counters=0: an input is kept for an edge it adds,
            # not for hitting one more often -- tens of KiB, not hundreds.
            [ $# -eq 1 ] || usage
            setup "$1"
            local t=$1
            fuzzer_cmd "$t"
            "${CMD[@]}" -merge=1 -use_counters=0 "$ROOT/fuzz/corpus/$t" "$VENV/corpus/$t" \
                >"$VENV/$t.merge.log" 2>&1 || { tail -20 "$VENV/$t.merge.log" >&2; exit 1; }
            log "$t: $(ls "$ROOT/fuzz/corpus/$t" | wc -l) inputs," \
                "$(du -sk --apparent-size "$ROOT/fuzz/corpus/$t" | cut -f1) KiB"
            return ;;
    esac
    [ $# -ge 1 ] || usage
    local limit
    if [ "$1" = --runs ]; then
        [ $# -ge 2 ] || usage
        limit=-runs=$2
        shift 2
    else
        limit=-max_total_time=$1
        shift
    fi
    [ "${1:-}" = -- ] && shift
    local targets
    if [ "$target" = all ]; then
        targets=("${TARGETS[@]}")
    elif [[ " ${TARGETS[*]} " == *" $target "* ]]; then
        targets=("$target")
    else
        echo "fuzz: unknown target $target; expected one of: all ${TARGETS[*]}" >&2
        exit 2
    fi
    setup "${targets[@]}"
    local failed=()
    for t in "${targets[@]}"; do
        run_one "$t" "$limit" "$@" || failed+=("$t")
    done
    if [ ${#failed[@]} -gt 0 ]; then
        log "findings in: ${failed[*]}"
        exit 1
    fi
}

main "$@"
