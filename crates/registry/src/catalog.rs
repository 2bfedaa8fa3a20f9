//! The registry's state in memory: schemas by id, subjects' versions and
//! compatibility levels. Built by applying the `_schemas` topic's records in
//! order; decides registrations without touching Kafka.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::api::error::ApiError;
use crate::compatibility::{incompatibilities, CompatibilityLevel};
use crate::record::{SchemaEntry, StoreRecord};
use crate::schema::ParsedSchema;
use crate::wire::{SubjectAndVersion, SubjectVersion};

/// A version as named in a URL: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// `latest` or `-1`.
    Latest,
    /// A version number, from 1.
    Number(u32),
}

impl VersionSpec {
    /// Parses `latest`, `-1` or a version number in `[1, 2^31-1]`.
    pub fn parse(text: &str) -> Result<VersionSpec, ApiError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match text.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n as u32)),
            _ => Err(ApiError::InvalidVersion(text.to_string())),
        }
    }
}

/// What registering a schema under a subject comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The subject already has the schema, with this id.
    Existing(u32),
    /// A new version to append to the topic, then apply.
    New(SchemaEntry),
}

#[derive(Debug, Default)]
struct Subject {
    /// Live versions and their schema ids.
    versions: BTreeMap<u32, u32>,
    /// The highest version ever used, deleted ones included, so numbers are never reused.
    max_version: u32,
}

/// Schemas, subjects and levels, as the topic's records so far say.
#[derive(Debug, Default)]
pub struct Catalog {
    schemas: HashMap<u32, Arc<ParsedSchema>>,
    ids: HashMap<String, u32>,
    subjects: BTreeMap<String, Subject>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    max_id: u32,
}

impl Catalog {
    /// Applies one record of the topic.
    pub fn apply(&mut self, record: StoreRecord) {
        match record {
            StoreRecord::Schema(entry) => self.apply_schema(entry),
            StoreRecord::SchemaRemoved { subject, version } => {
                if let Some(s) = self.subjects.get_mut(&subject) {
                    s.versions.remove(&version);
                }
            }
            StoreRecord::Config {
                subject: None,
                level,
            } => self.global_level = Some(level),
            StoreRecord::Config {
                subject: Some(subject),
                level,
            } => {
                self.subject_levels.insert(subject, level);
            }
            StoreRecord::ConfigRemoved { subject: None } => self.global_level = None,
            StoreRecord::ConfigRemoved {
                subject: Some(subject),
            } => {
                self.subject_levels.remove(&subject);
            }
        }
    }

    fn apply_schema(&mut self, entry: SchemaEntry) {
        // Count the id even if the schema is unusable here, so it is never handed out again.
        self.max_id = self.max_id.max(entry.id);
        if !self.schemas.contains_key(&entry.id) {
            match ParsedSchema::parse(&entry.schema) {
                Ok(parsed) => {
                    self.ids.entry(parsed.identity.clone()).or_insert(entry.id);
                    self.schemas.insert(entry.id, Arc::new(parsed));
                }
                Err(e) => {
                    tracing::warn!(id = entry.id, subject = %entry.subject, error = %e,
                        "skipping a stored schema that is not valid Avro");
                    return;
                }
            }
        }
        let subject = self.subjects.entry(entry.subject).or_default();
        subject.max_version = subject.max_version.max(entry.version);
        if entry.deleted {
            subject.versions.remove(&entry.version);
        } else {
            subject.versions.insert(entry.version, entry.id);
        }
    }

    /// The schema with global id `id`.
    pub fn schema(&self, id: u32) -> Option<&Arc<ParsedSchema>> {
        self.schemas.get(&id)
    }

    /// Subjects with at least one live version, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, s)| !s.versions.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn subject(&self, subject: &str) -> Result<&Subject, ApiError> {
        self.subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| ApiError::SubjectNotFound(subject.to_string()))
    }

    /// The live versions of `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, ApiError> {
        Ok(self.subject(subject)?.versions.keys().copied().collect())
    }

    /// One version of `subject`.
    pub fn version(&self, subject: &str, spec: VersionSpec) -> Result<SubjectVersion, ApiError> {
        let versions = &self.subject(subject)?.versions;
        let found = match spec {
            VersionSpec::Latest => versions.iter().next_back(),
            VersionSpec::Number(n) => versions.get_key_value(&n),
        };
        let (version, id) = found.ok_or_else(|| ApiError::VersionNotFound {
            subject: subject.to_string(),
            version: match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            },
        })?;
        self.subject_version(subject, *version, *id)
    }

    fn subject_version(
        &self,
        subject: &str,
        version: u32,
        id: u32,
    ) -> Result<SubjectVersion, ApiError> {
        let schema = self
            .schemas
            .get(&id)
            .ok_or_else(|| ApiError::SchemaNotFound(format!("id {id}")))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            id,
            version,
            schema: schema.text.clone(),
        })
    }

    /// The version of `subject` that holds `schema`.
    pub fn lookup(&self, subject: &str, schema: &ParsedSchema) -> Result<SubjectVersion, ApiError> {
        let versions = &self.subject(subject)?.versions;
        let id = self.ids.get(&schema.identity).ok_or_else(|| {
            ApiError::SchemaNotFound(format!("not registered under subject '{subject}'"))
        })?;
        let version = versions
            .iter()
            .find(|(_, v_id)| *v_id == id)
            .map(|(v, _)| *v)
            .ok_or_else(|| {
                ApiError::SchemaNotFound(format!("not registered under subject '{subject}'"))
            })?;
        self.subject_version(subject, version, *id)
    }

    /// The subject versions that use schema `id`.
    pub fn usages(&self, id: u32) -> Result<Vec<SubjectAndVersion>, ApiError> {
        if !self.schemas.contains_key(&id) {
            return Err(ApiError::SchemaNotFound(format!("id {id}")));
        }
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, s)| {
                s.versions
                    .iter()
                    .filter(move |(_, v_id)| **v_id == id)
                    .map(move |(version, _)| SubjectAndVersion {
                        subject: subject.clone(),
                        version: *version,
                    })
            })
            .collect())
    }

    /// The level set for `subject`, or the global one when `subject` is `None`.
    pub fn configured_level(&self, subject: Option<&str>) -> Option<CompatibilityLevel> {
        match subject {
            Some(subject) => self.subject_levels.get(subject).copied(),
            None => self.global_level,
        }
    }

    /// The level new versions of `subject` are checked at: its own, else the global one.
    pub fn level(&self, subject: &str) -> CompatibilityLevel {
        self.configured_level(Some(subject))
            .or(self.global_level)
            .unwrap_or_default()
    }

    /// What registering `schema` under `subject` takes: nothing if it is there
    /// already, else a new version with the schema's existing global id or the
    /// next one. Refused if the subject's level does not allow it.
    pub fn register(&self, subject: &str, schema: &ParsedSchema) -> Result<Registration, ApiError> {
        if let Ok(found) = self.lookup(subject, schema) {
            return Ok(Registration::Existing(found.id));
        }
        let details = self.check(subject, schema, None)?;
        if !details.is_empty() {
            return Err(ApiError::Incompatible {
                subject: subject.to_string(),
                details,
            });
        }
        let id = match self.ids.get(&schema.identity) {
            Some(id) => *id,
            None => self
                .max_id
                .checked_add(1)
                .ok_or_else(|| ApiError::Store("schema ids are exhausted".into()))?,
        };
        let version = self
            .subjects
            .get(subject)
            .map_or(0, |s| s.max_version)
            .checked_add(1)
            .ok_or_else(|| ApiError::Store(format!("versions of {subject} are exhausted")))?;
        Ok(Registration::New(SchemaEntry {
            subject: subject.to_string(),
            version,
            id,
            schema: schema.text.clone(),
            deleted: false,
        }))
    }

    /// Why `schema` may not be registered under `subject`: checked against
    /// version `against` only, or (`None`) against the versions the subject's
    /// level asks for. Empty when it may.
    pub fn check(
        &self,
        subject: &str,
        schema: &ParsedSchema,
        against: Option<VersionSpec>,
    ) -> Result<Vec<String>, ApiError> {
        let level = self.level(subject);
        let earlier: Vec<SubjectVersion> = match against {
            Some(spec) => vec![self.version(subject, spec)?],
            None => match self.subject(subject) {
                Err(_) => Vec::new(),
                Ok(s) if level.is_transitive() => s
                    .versions
                    .iter()
                    .map(|(v, id)| self.subject_version(subject, *v, *id))
                    .collect::<Result<_, _>>()?,
                Ok(_) => vec![self.version(subject, VersionSpec::Latest)?],
            },
        };
        let earlier: Vec<(u32, &apache_avro::Schema)> = earlier
            .iter()
            .filter_map(|v| self.schemas.get(&v.id).map(|s| (v.version, &s.schema)))
            .collect();
        Ok(incompatibilities(level, &schema.schema, &earlier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"E","fields":[{"name":"a","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"E","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const REQUIRED_B: &str = r#"{"type":"record","name":"E","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;

    fn parsed(text: &str) -> ParsedSchema {
        ParsedSchema::parse(text).unwrap()
    }

    /// Registers as the server does: decide, then apply what would be appended.
    fn register(catalog: &mut Catalog, subject: &str, text: &str) -> Result<u32, ApiError> {
        match catalog.register(subject, &parsed(text))? {
            Registration::Existing(id) => Ok(id),
            Registration::New(entry) => {
                let id = entry.id;
                catalog.apply(StoreRecord::Schema(entry));
                Ok(id)
            }
        }
    }

    #[test]
    fn ids_start_at_one_and_versions_count_per_subject() {
        let mut c = Catalog::default();
        assert_eq!(register(&mut c, "s", V1).unwrap(), 1);
        assert_eq!(register(&mut c, "s", V2).unwrap(), 2);
        assert_eq!(c.versions("s").unwrap(), vec![1, 2]);
        let latest = c.version("s", VersionSpec::Latest).unwrap();
        assert_eq!(
            (latest.id, latest.version, latest.schema.as_str()),
            (2, 2, V2)
        );
    }

    #[test]
    fn the_same_schema_respelled_keeps_its_id_and_version() {
        let mut c = Catalog::default();
        let id = register(&mut c, "s", V1).unwrap();
        let respelled = r#"{ "name": "E", "type": "record", "fields": [ {"name": "a", "type": {"type": "string"}} ] }"#;
        assert_eq!(register(&mut c, "s", respelled).unwrap(), id);
        assert_eq!(c.versions("s").unwrap(), vec![1]);
    }

    #[test]
    fn an_older_version_registered_again_returns_its_id_without_a_new_version() {
        let mut c = Catalog::default();
        register(&mut c, "s", V1).unwrap();
        register(&mut c, "s", V2).unwrap();
        assert_eq!(register(&mut c, "s", V1).unwrap(), 1);
        assert_eq!(c.versions("s").unwrap(), vec![1, 2]);
    }

    #[test]
    fn the_same_schema_under_another_subject_reuses_the_global_id() {
        let mut c = Catalog::default();
        register(&mut c, "a", V1).unwrap();
        let id = register(&mut c, "b", V2).unwrap();
        assert_eq!(register(&mut c, "c", V2).unwrap(), id);
        assert_eq!(c.version("c", VersionSpec::Number(1)).unwrap().id, id);
        let usages = c.usages(id).unwrap();
        assert_eq!(usages.len(), 2, "{usages:?}");
    }

    #[test]
    fn an_incompatible_version_is_refused_under_the_default_level() {
        let mut c = Catalog::default();
        register(&mut c, "s", V1).unwrap();
        let err = register(&mut c, "s", REQUIRED_B).unwrap_err();
        assert!(matches!(err, ApiError::Incompatible { .. }), "{err}");
        assert_eq!(c.versions("s").unwrap(), vec![1]);
    }

    #[test]
    fn a_subject_level_overrides_the_global_one() {
        let mut c = Catalog::default();
        c.apply(StoreRecord::Config {
            subject: None,
            level: CompatibilityLevel::Full,
        });
        c.apply(StoreRecord::Config {
            subject: Some("s".into()),
            level: CompatibilityLevel::None,
        });
        register(&mut c, "s", V1).unwrap();
        register(&mut c, "s", REQUIRED_B).unwrap();
        assert_eq!(c.level("other"), CompatibilityLevel::Full);
        c.apply(StoreRecord::ConfigRemoved {
            subject: Some("s".into()),
        });
        assert_eq!(c.level("s"), CompatibilityLevel::Full);
    }

    #[test]
    fn lookups_distinguish_missing_subject_version_and_schema() {
        let mut c = Catalog::default();
        register(&mut c, "s", V1).unwrap();
        let code = |e: ApiError| e.status_and_code().1;
        assert_eq!(
            code(c.version("x", VersionSpec::Latest).unwrap_err()),
            40401
        );
        assert_eq!(
            code(c.version("s", VersionSpec::Number(9)).unwrap_err()),
            40402
        );
        assert_eq!(code(c.lookup("s", &parsed(V2)).unwrap_err()), 40403);
        assert_eq!(code(c.lookup("x", &parsed(V1)).unwrap_err()), 40401);
        assert_eq!(code(c.usages(42).unwrap_err()), 40403);
    }

    #[test]
    fn versions_parse_like_confluents() {
        assert_eq!(VersionSpec::parse("latest").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("-1").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("3").unwrap(), VersionSpec::Number(3));
        for bad in ["0", "-2", "x", "2147483648", ""] {
            assert!(VersionSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deleted_versions_are_hidden_but_their_numbers_and_ids_are_not_reused() {
        let mut c = Catalog::default();
        register(&mut c, "s", V1).unwrap();
        register(&mut c, "s", V2).unwrap();
        c.apply(StoreRecord::SchemaRemoved {
            subject: "s".into(),
            version: 2,
        });
        assert_eq!(c.versions("s").unwrap(), vec![1]);
        assert!(c.schema(2).is_some());
        let other = r#"{"type":"record","name":"E","fields":[{"name":"a","type":"string"},{"name":"c","type":"int","default":0}]}"#;
        let id = register(&mut c, "s", other).unwrap();
        assert_eq!(id, 3);
        assert_eq!(c.versions("s").unwrap(), vec![1, 3]);
    }

    #[test]
    fn a_stored_schema_that_does_not_parse_is_skipped_but_its_id_is_not_reused() {
        let mut c = Catalog::default();
        c.apply(StoreRecord::Schema(SchemaEntry {
            subject: "proto".into(),
            version: 1,
            id: 5,
            schema: "syntax = \"proto3\";".into(),
            deleted: false,
        }));
        assert!(c.schema(5).is_none());
        assert_eq!(register(&mut c, "s", V1).unwrap(), 6);
    }
}
