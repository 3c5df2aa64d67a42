# The two commands of the README: `make run` and `make test`. The rest are their parts.
.PHONY: run test console tools-console tools check bench

# Build everything a fresh machine needs (console included) and serve on embedded SQLite.
run: tools-console console
	cargo run --release -p keyward -- serve

# The whole test suite: unit, integration (SQLite and PostgreSQL), interop and browser tests.
test: tools console
	cargo test --workspace --exclude console --no-fail-fast -- --test-threads 4

# wasm-opt 132 from target/tools (see Trunk.toml) ahead of any other on PATH.
console:
	PATH="$(CURDIR)/target/tools/node_modules/.bin:$$PATH" trunk build --release
	mkdir -p console/dist/graphiql
	cp target/tools/node_modules/graphiql/graphiql.min.js target/tools/node_modules/graphiql/graphiql.min.css \
	   target/tools/node_modules/react/umd/react.production.min.js \
	   target/tools/node_modules/react-dom/umd/react-dom.production.min.js console/style/favicon.svg console/dist/graphiql/

tools-console:
	bash .ci/tools.sh console

tools:
	bash .ci/tools.sh all

# Keyward against PostgreSQL's own limit, with wrk and pgbench on a fresh database (needs
# PostgreSQL running; installs wrk if missing). Minutes, not part of `make test`; BENCH_RUNS=3
# for medians, other knobs in tests/bench/README.md.
bench:
	cargo run --release -p tests --bin bench

check:
	cargo fmt --all -- --check
	cargo clippy --workspace --exclude console --all-targets -- -D warnings
	cargo clippy -p console --target wasm32-unknown-unknown -- -D warnings
