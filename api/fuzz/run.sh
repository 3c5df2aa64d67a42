#!/usr/bin/env bash
# Runs each fuzz target for a bounded time: ./run.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 120 s each, every target). Needs a nightly toolchain (libFuzzer's
# instrumentation); installs cargo-fuzz if it is missing. Findings land in
# artifacts/<target>/; `cargo +nightly fuzz run <target> <artifact>` replays one.
# Not part of `make test` or CI.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(seal_roundtrip stored_values text_inputs)
fi
# ASan finds little in a crate without unsafe code and halves the speed; opt in with
# FUZZ_SANITIZER=address.
sanitizer=${FUZZ_SANITIZER:-none}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

status=0
for target in "${targets[@]}"; do
    case "$target" in
        seal_roundtrip) dict=dict/json.dict ;;
        text_inputs) dict=dict/text.dict ;;
        *) dict= ;;
    esac
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds}s" >&2
    if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
        ${dict:+-dict="$dict"} -print_final_stats=1; then
        echo "fuzz: $target FOUND SOMETHING (see artifacts/$target/)" >&2
        status=1
    fi
done
exit $status
