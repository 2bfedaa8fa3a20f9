//! The JSON bodies of the REST API, as Confluent's registry spells them;
//! shared by the server and the client.

use serde::{Deserialize, Serialize};

/// The media type of every body the registry sends.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A schema to register or look up under a subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaRequest {
    /// The schema text.
    pub schema: String,
    /// `AVRO` when absent; the only type this registry takes.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
    /// Schemas this one refers to; this registry takes none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<serde_json::Value>,
}

/// The id a registration got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RegisteredId {
    /// The global schema id.
    pub id: u32,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectVersion {
    /// The subject, e.g. `journey.events.raw-value`.
    pub subject: String,
    /// The global schema id.
    pub id: u32,
    /// The version within the subject, from 1.
    pub version: u32,
    /// The schema text.
    pub schema: String,
}

/// A schema fetched by id; Confluent omits the type for Avro.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaText {
    /// The schema text.
    pub schema: String,
    /// The schema type, absent for Avro.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
}

/// A subject and version a schema id is registered under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAndVersion {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: u32,
}

/// The answer of a compatibility check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompatibilityCheck {
    /// Whether the schema may be registered.
    pub is_compatible: bool,
    /// Why not, when `verbose=true` was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
}

/// A failed call, e.g. `{"error_code": 40401, "message": "Subject 'x' not found."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Confluent's error code: the HTTP status, or the status and two digits.
    pub error_code: u32,
    /// What went wrong.
    pub message: String,
}
