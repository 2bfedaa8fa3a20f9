//! Structured logging with `tracing`, as pretty text or JSON lines, and the
//! tag that stands for a customer in log lines.
//!
//! No log line holds a customer id, an anonymous id, an email or free text:
//! where a line is about one customer it carries `customer = %customer_tag(id)`,
//! a keyed hash that support staff can compute for a given id
//! (`journey customer-tag <id>`) but that reveals nothing without the key.
//!
//! ```
//! use journey_core::config::Secret;
//! use journey_core::telemetry::CustomerTagger;
//!
//! let tagger = CustomerTagger::new(&Secret::new("from log.customer_id_key"));
//! let tag = tagger.tag("customer-42");
//! assert_eq!(tag.to_string().len(), 16);
//! assert_eq!(tag, tagger.tag("customer-42"));
//! ```

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, Secret};

/// Installs the global subscriber, writing to standard output, and the key
/// of [`customer_tag`]; a second call (tests, embedded runs) is a no-op.
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

/// Domain separation of the tag key: the configured secret keys nothing else.
const TAG_CONTEXT: &str = "journey customer tag v1";

/// Turns customer ids into short tags for log lines: a BLAKE3 hash keyed
/// with `log.customer_id_key`. One key gives one id the same tag in every
/// process; without the key a tag cannot be traced back, nor a guessed id
/// checked against it.
#[derive(Clone)]
pub struct CustomerTagger {
    key: [u8; 32],
}

impl CustomerTagger {
    /// A tagger keyed with `secret` (`log.customer_id_key`).
    pub fn new(secret: &Secret) -> Self {
        CustomerTagger {
            key: blake3::derive_key(TAG_CONTEXT, secret.expose().as_bytes()),
        }
    }

    /// A tagger with a random key: tags hold within this process only.
    pub fn random() -> Self {
        CustomerTagger {
            key: rand::random(),
        }
    }

    /// The tagger `log` configures: keyed with `log.customer_id_key`, else random.
    pub fn from_config(log: &LogConfig) -> Self {
        log.customer_id_key
            .as_ref()
            .map_or_else(CustomerTagger::random, CustomerTagger::new)
    }

    /// The tag of customer (or visitor) `id`.
    pub fn tag(&self, id: &str) -> CustomerTag {
        let hash = blake3::keyed_hash(&self.key, id.as_bytes());
        let mut tag = [0; 8];
        tag.copy_from_slice(&hash.as_bytes()[..8]);
        CustomerTag(tag)
    }
}

impl fmt::Debug for CustomerTagger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerTagger { key: \"***\" }")
    }
}

/// What stands for a customer in a log line: 64 bits of a keyed hash of the
/// id, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerTag([u8; 8]);

impl fmt::Display for CustomerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CustomerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

static TAGGER: OnceLock<CustomerTagger> = OnceLock::new();

/// The tag of customer `id` under this process's key: `log.customer_id_key`
/// from [`init`], or a random key when unset (or before `init`). For log
/// fields: `tracing::warn!(customer = %customer_tag(id), ...)`.
pub fn customer_tag(id: &str) -> CustomerTag {
    TAGGER.get_or_init(CustomerTagger::random).tag(id)
}

/// [`customer_tag`] of a record key, read as UTF-8 (lossily).
pub fn key_tag(key: &[u8]) -> CustomerTag {
    customer_tag(&String::from_utf8_lossy(key))
}

fn install<W>(log: &LogConfig, writer: W, ansi: bool) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&log.filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: field `log.filter`: {e}"))?;
    let _ = TAGGER.set(CustomerTagger::from_config(log));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tagger(key: &str) -> CustomerTagger {
        CustomerTagger::new(&Secret::new(key))
    }

    #[test]
    fn one_key_gives_one_id_the_same_tag() {
        let (a, b) = (tagger("key-1"), tagger("key-1"));
        for id in ["customer-42", "anon-7f3a", "alice@example.com", ""] {
            assert_eq!(a.tag(id), b.tag(id), "{id}");
            assert_eq!(a.tag(id).to_string().len(), 16, "{id}");
        }
        assert_ne!(a.tag("customer-42"), a.tag("customer-43"));
    }

    #[test]
    fn another_key_gives_other_tags() {
        let (a, b) = (tagger("key-1"), tagger("key-2"));
        assert_ne!(a.tag("customer-42"), b.tag("customer-42"));
        assert_ne!(
            CustomerTagger::random().tag("customer-42"),
            CustomerTagger::random().tag("customer-42")
        );
    }

    #[test]
    fn a_tag_holds_nothing_of_the_id_or_the_key() {
        let t = tagger("key-1");
        for id in ["alice@example.com", "customer-42", "0123456789abcdef"] {
            let shown = format!("{} {:?} {t:?}", t.tag(id), t.tag(id));
            assert!(!shown.contains(id), "{shown}");
            assert!(!shown.contains("key-1"), "{shown}");
            assert!(shown
                .split(' ')
                .take(2)
                .all(|tag| tag.chars().all(|c| c.is_ascii_hexdigit())));
        }
    }

    #[test]
    fn the_tag_is_a_keyed_hash_of_the_id_alone() {
        // Pinned: a tag support staff compute today must find tomorrow's log lines.
        assert_eq!(tagger("key-1").tag("customer-42").to_string(), PINNED);
    }

    const PINNED: &str = "5061a7504b54ad61";
}
