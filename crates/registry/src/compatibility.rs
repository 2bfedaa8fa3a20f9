//! Compatibility levels and the check a new schema version must pass.
//!
//! BACKWARD: the new schema can read data written with the previous one.
//! FORWARD: the previous schema can read data written with the new one.
//! FULL: both. The `_TRANSITIVE` levels check every earlier version, the
//! others only the latest.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// A subject's compatibility level, spelled as in Confluent's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// A compatibility level name that is not one of Confluent's.
#[derive(Debug, thiserror::Error)]
#[error("invalid compatibility level {0:?}: expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE")]
pub struct InvalidLevel(pub String);

impl CompatibilityLevel {
    const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    /// The level's name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every earlier version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| InvalidLevel(s.to_string()))
    }
}

/// Why `candidate` may not follow the `earlier` versions (`(version, schema)`)
/// under `level`; empty when it may. The caller picks which versions to pass:
/// all of them for a transitive level, the latest otherwise.
pub fn incompatibilities(
    level: CompatibilityLevel,
    candidate: &Schema,
    earlier: &[(u32, &Schema)],
) -> Vec<String> {
    let mut messages = Vec::new();
    for (version, previous) in earlier {
        if level.backward() {
            if let Err(e) = SchemaCompatibility::can_read(previous, candidate) {
                messages.push(format!(
                    "{level}: the new schema cannot read data written with version {version}: {}",
                    chain(&e)
                ));
            }
        }
        if level.forward() {
            if let Err(e) = SchemaCompatibility::can_read(candidate, previous) {
                messages.push(format!(
                    "{level}: version {version} cannot read data written with the new schema: {}",
                    chain(&e)
                ));
            }
        }
    }
    messages
}

/// An error with its causes, which name the nested field that failed.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::CompatibilityLevel::*;
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Event","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;
    const ID_INT: &str = r#"{"name":"id","type":"int"}"#;
    const ID_LONG: &str = r#"{"name":"id","type":"long"}"#;
    const NOTE_OPTIONAL: &str = r#"{"name":"note","type":["null","string"],"default":null}"#;
    const NOTE_REQUIRED: &str = r#"{"name":"note","type":"string"}"#;

    fn compatible(level: CompatibilityLevel, previous: &str, next: &str) -> bool {
        let (previous, next) = (record(previous), record(next));
        incompatibilities(level, &next, &[(1, &previous)]).is_empty()
    }

    #[test]
    fn evolutions_are_judged_per_level() {
        let with_optional = format!("{ID},{NOTE_OPTIONAL}");
        let with_required = format!("{ID},{NOTE_REQUIRED}");
        // (what changes, previous, next, [NONE, BACKWARD, FORWARD, FULL])
        let table: [(&str, &str, &str, [bool; 4]); 7] = [
            ("nothing", ID, ID, [true, true, true, true]),
            (
                "add a field with a default",
                ID,
                &with_optional,
                [true, true, true, true],
            ),
            (
                "add a field without a default",
                ID,
                &with_required,
                [true, false, true, false],
            ),
            (
                "remove a field that had a default",
                &with_optional,
                ID,
                [true, true, true, true],
            ),
            (
                "remove a field without a default",
                &with_required,
                ID,
                [true, true, false, false],
            ),
            (
                "change a field's type",
                ID,
                ID_INT,
                [true, false, false, false],
            ),
            (
                "widen int to long",
                ID_INT,
                ID_LONG,
                [true, true, false, false],
            ),
        ];
        for (change, previous, next, expected) in table {
            for (level, want) in [None, Backward, Forward, Full].into_iter().zip(expected) {
                assert_eq!(
                    compatible(level, previous, next),
                    want,
                    "{change} under {level}"
                );
            }
        }
    }

    #[test]
    fn transitive_levels_check_every_earlier_version() {
        let v1 = record(ID);
        let v2 = record(&format!(r#"{ID},{{"name":"n","type":"int","default":0}}"#));
        let v3 = record(&format!(r#"{ID},{{"name":"n","type":"int"}}"#));
        // v3 reads v2's data (it has `n`) but not v1's (no `n`, no default).
        assert!(incompatibilities(Backward, &v3, &[(2, &v2)]).is_empty());
        let messages = incompatibilities(BackwardTransitive, &v3, &[(1, &v1), (2, &v2)]);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("version 1"), "{}", messages[0]);
        assert!(messages[0].contains("'n'"), "{}", messages[0]);
    }

    #[test]
    fn full_reports_both_directions() {
        let messages = incompatibilities(Full, &record(ID_INT), &[(4, &record(ID))]);
        assert_eq!(messages.len(), 2, "{messages:?}");
    }

    #[test]
    fn levels_parse_case_insensitively_and_refuse_unknown_names() {
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>().unwrap(),
            FullTransitive
        );
        assert_eq!("NONE".parse::<CompatibilityLevel>().unwrap(), None);
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>().unwrap(), level);
            assert_eq!(
                serde_json::to_value(level).unwrap(),
                serde_json::Value::from(level.as_str())
            );
        }
    }
}
