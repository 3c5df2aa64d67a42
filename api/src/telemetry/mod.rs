//! Logging: human-readable by default, JSON with `--log-format json`, levels from
//! RUST_LOG. Request spans carry the request id, so every line of a request has it.
//!
//! The binary writes its lines through [`StderrLines`]: a request hands its formatted line
//! to a thread of its own, which writes to standard error and flushes whenever it has
//! nothing more to write. Writing to the unbuffered standard error on the request's own
//! thread (a system call and the stream's lock for every `served` line) cost a sixth of
//! a config read's throughput (tests/bench/README.md).

pub mod metrics;

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub const DEFAULT_FILTER: &str = "info,sea_orm=warn,sqlx=warn,tower_http=warn";

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init<W>(format: LogFormat, filter: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Standard error, written by a thread of its own (see the module notes). Cheap to clone.
#[derive(Clone)]
pub struct StderrLines {
    tx: SyncSender<Line>,
}

enum Line {
    Text(Vec<u8>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Lines waiting to be written at most; a writer waits beyond (as it waited for a slow
/// standard error before).
const QUEUED_LINES: usize = 4096;

impl StderrLines {
    /// Starts the writing thread.
    pub fn start() -> Self {
        let (tx, rx) = sync_channel(QUEUED_LINES);
        std::thread::Builder::new()
            .name("keyward-log".into())
            .spawn(move || write_lines(rx))
            .expect("the logging thread starts");
        Self { tx }
    }

    /// Returns once every line handed over so far is written (or after a second).
    pub fn flush(&self) {
        let (done, written) = std::sync::mpsc::channel();
        if self.tx.send(Line::Flush(done)).is_ok() {
            let _ = written.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn write_lines(rx: Receiver<Line>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            match line {
                Line::Text(bytes) => {
                    let _ = out.write_all(&bytes);
                }
                Line::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        // Nothing more for now: out it goes.
        let _ = out.flush();
    }
}

/// One event's output, handed to the writing thread when the event is done.
pub struct LineWriter {
    tx: SyncSender<Line>,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.tx.send(Line::Text(std::mem::take(&mut self.buf)));
        }
    }
}

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            tx: self.tx.clone(),
            buf: Vec::new(),
        }
    }
}
