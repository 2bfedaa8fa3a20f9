//! Structured logging with `tracing`, as pretty text or JSON lines.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber, writing to standard output; a second call
/// (tests, embedded runs) is a no-op.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    install(log, std::io::stdout, true)
}

/// Like [`init`], but appends to the file at `path` instead.
pub fn init_to_file(log: &LogConfig, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))?;
    install(log, Mutex::new(file), false)
}

fn install<W>(log: &LogConfig, writer: W, ansi: bool) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&log.filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: field `log.filter`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(())
}
