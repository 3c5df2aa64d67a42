//! The `keyward` binary: a thin shim over `keyward::cli`.

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
