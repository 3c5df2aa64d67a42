#!/usr/bin/env bash
# The soak run (issue 7 point 8): ./tests/soak.sh [MINUTES] [MAX_REQUESTS] [WORKERS]
#
# Builds the release server and the load generator (tests/examples/soak.rs), then runs
# mixed traffic against the server on a fresh PostgreSQL database (KEYWARD_TEST_PG_URL,
# default postgres://postgres@127.0.0.1:5432/postgres) over loopback only, for MINUTES
# (default 10) or MAX_REQUESTS (default 2,000,000), whichever comes first. It reports
# errors by kind, the server's RSS over time and a final check that every acknowledged
# write is present, then stops the server and drops the database. Exit 0 on PASS.
#
# Long-running: not part of `make test` or CI.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
max_requests=${2:-2000000}
workers=${3:-8}

cargo build --release -p keyward --bin keyward
cargo build --release -p tests --example soak
exec target/release/examples/soak \
    --server target/release/keyward \
    --minutes "$minutes" \
    --max-requests "$max_requests" \
    --workers "$workers"
