//! The `keyward` binary: a thin shim over `keyward::cli`.

/// mimalloc instead of glibc's malloc: a request allocates and frees thousands of small
/// blocks (GraphQL documents, JSON values), and glibc's allocator was about a tenth of the
/// server's CPU time under load (tests/bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match keyward::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
