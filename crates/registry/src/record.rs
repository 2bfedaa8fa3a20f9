//! Records of the `_schemas` topic, in the layout of Confluent's registry so
//! the topic reads the same to people and tools that know that one.
//!
//! Keys: `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}` and
//! `{"keytype":"CONFIG","subject":S|null,"magic":0}`. Values:
//! `{"subject":S,"version":V,"id":ID,"schema":TEXT,"deleted":false}` and
//! `{"compatibilityLevel":"BACKWARD"}`. A null value (tombstone) removes the key.

use serde::{Deserialize, Serialize};

use crate::compatibility::CompatibilityLevel;

/// One subject version as stored: its schema text and global id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEntry {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    /// A soft-deleted version: its id still resolves, the subject no longer lists it.
    #[serde(default)]
    pub deleted: bool,
}

/// A decoded record of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRecord {
    /// A subject version was registered (or soft-deleted).
    Schema(SchemaEntry),
    /// A tombstone: the subject version is gone.
    SchemaRemoved { subject: String, version: u32 },
    /// A compatibility level for a subject, or the global one when `subject` is `None`.
    Config {
        subject: Option<String>,
        level: CompatibilityLevel,
    },
    /// A tombstone: the subject's (or global) level is back to its default.
    ConfigRemoved { subject: Option<String> },
}

/// A record of the topic this registry cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable record in the schemas topic: {0}")]
pub struct RecordError(String);

#[derive(Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "UPPERCASE")]
enum Key {
    Schema {
        subject: String,
        version: u32,
        magic: u32,
    },
    Config {
        subject: Option<String>,
        magic: u32,
    },
    /// NOOP, DELETE_SUBJECT, MODE and other keys Confluent's registry writes.
    #[serde(other)]
    Other,
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: CompatibilityLevel,
}

const SCHEMA_KEY_MAGIC: u32 = 1;
const CONFIG_KEY_MAGIC: u32 = 0;

impl StoreRecord {
    /// The record's key and value (`None` for a tombstone) as JSON bytes.
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let (key, value) = match self {
            StoreRecord::Schema(entry) => (
                Key::Schema {
                    subject: entry.subject.clone(),
                    version: entry.version,
                    magic: SCHEMA_KEY_MAGIC,
                },
                Some(to_json(entry)),
            ),
            StoreRecord::SchemaRemoved { subject, version } => (
                Key::Schema {
                    subject: subject.clone(),
                    version: *version,
                    magic: SCHEMA_KEY_MAGIC,
                },
                None,
            ),
            StoreRecord::Config { subject, level } => (
                Key::Config {
                    subject: subject.clone(),
                    magic: CONFIG_KEY_MAGIC,
                },
                Some(to_json(&ConfigValue {
                    compatibility_level: *level,
                })),
            ),
            StoreRecord::ConfigRemoved { subject } => (
                Key::Config {
                    subject: subject.clone(),
                    magic: CONFIG_KEY_MAGIC,
                },
                None,
            ),
        };
        (to_json(&key), value)
    }

    /// Decodes a record; `Ok(None)` for kinds of record this registry does not use.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Option<Self>, RecordError> {
        let key = key.ok_or_else(|| RecordError("a record without a key".into()))?;
        let key: Key = serde_json::from_slice(key)
            .map_err(|e| RecordError(format!("key {}: {e}", String::from_utf8_lossy(key))))?;
        let record = match (key, value) {
            (Key::Other, _) => return Ok(None),
            (
                Key::Schema {
                    subject, version, ..
                },
                None,
            ) => StoreRecord::SchemaRemoved { subject, version },
            (Key::Schema { .. }, Some(value)) => StoreRecord::Schema(
                serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("schema value: {e}")))?,
            ),
            (Key::Config { subject, .. }, None) => StoreRecord::ConfigRemoved { subject },
            (Key::Config { subject, .. }, Some(value)) => {
                let value: ConfigValue = serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("config value: {e}")))?;
                StoreRecord::Config {
                    subject,
                    level: value.compatibility_level,
                }
            }
        };
        Ok(Some(record))
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Structs of strings, integers and enums always serialize.
    serde_json::to_vec(value).expect("a record of strings and integers serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> SchemaEntry {
        SchemaEntry {
            subject: "orders-value".into(),
            version: 2,
            id: 7,
            schema: r#""string""#.into(),
            deleted: false,
        }
    }

    #[test]
    fn records_are_laid_out_like_confluents() {
        let (key, value) = StoreRecord::Schema(entry()).encode();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":2,"magic":1}"#
        );
        assert_eq!(
            String::from_utf8(value.unwrap()).unwrap(),
            r#"{"subject":"orders-value","version":2,"id":7,"schema":"\"string\"","deleted":false}"#
        );
        let (key, value) = StoreRecord::Config {
            subject: None,
            level: CompatibilityLevel::Full,
        }
        .encode();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            String::from_utf8(value.unwrap()).unwrap(),
            r#"{"compatibilityLevel":"FULL"}"#
        );
    }

    #[test]
    fn every_record_round_trips() {
        for record in [
            StoreRecord::Schema(entry()),
            StoreRecord::SchemaRemoved {
                subject: "s".into(),
                version: 3,
            },
            StoreRecord::Config {
                subject: Some("s".into()),
                level: CompatibilityLevel::ForwardTransitive,
            },
            StoreRecord::ConfigRemoved { subject: None },
        ] {
            let (key, value) = record.encode();
            let decoded = StoreRecord::decode(Some(&key), value.as_deref()).unwrap();
            assert_eq!(decoded, Some(record));
        }
    }

    #[test]
    fn confluent_bookkeeping_records_are_skipped() {
        let key = br#"{"keytype":"NOOP","magic":0}"#;
        assert_eq!(StoreRecord::decode(Some(key), Some(b"{}")).unwrap(), None);
    }

    #[test]
    fn unreadable_records_are_errors_not_panics() {
        assert!(StoreRecord::decode(None, Some(b"{}")).is_err());
        assert!(StoreRecord::decode(Some(b"not json"), None).is_err());
        let key = br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#;
        assert!(StoreRecord::decode(Some(key), Some(b"{}")).is_err());
        let key = br#"{"keytype":"CONFIG","subject":null,"magic":0}"#;
        assert!(
            StoreRecord::decode(Some(key), Some(br#"{"compatibilityLevel":"SIDEWAYS"}"#)).is_err()
        );
    }
}
