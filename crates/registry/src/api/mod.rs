//! The REST API: the subset of Confluent's Schema Registry API that
//! Confluent's serializers (Java, Python, librdkafka-based) call.

pub mod error;

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use crate::catalog::{Catalog, Registration, VersionSpec};
use crate::compatibility::CompatibilityLevel;
use crate::record::StoreRecord;
use crate::schema::ParsedSchema;
use crate::store::Store;
use crate::wire::{CompatibilityCheck, RegisteredId, SchemaRequest, SchemaText, CONTENT_TYPE};
use error::ApiError;

/// The catalog that reads see, and the store that writes go through one at a time.
pub struct Shared {
    catalog: RwLock<Catalog>,
    /// Held for the whole decide-append-apply sequence of a write, so writes never interleave.
    store: tokio::sync::Mutex<Store>,
}

impl Shared {
    /// State for the API from a loaded catalog and an open store.
    pub fn new(catalog: Catalog, store: Store) -> Shared {
        Shared {
            catalog: RwLock::new(catalog),
            store: tokio::sync::Mutex::new(store),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        // The catalog is only changed by `apply`, which cannot leave it half-done.
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the writer, first catching up with the topic if a write failed.
    async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, Store>, ApiError> {
        let mut store = self.store.lock().await;
        if let Some(catalog) = store.resync().await? {
            *self.write() = catalog;
        }
        Ok(store)
    }

    /// Appends `record` to the topic, then applies it.
    async fn append(&self, store: &mut Store, record: StoreRecord) -> Result<(), ApiError> {
        store.append(&record).await?;
        self.write().apply(record);
        Ok(())
    }
}

/// Every route of the API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(subject_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subject_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(subject_version_schema),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_against_level),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_against_version),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(set_subject_config),
        )
        .with_state(shared)
}

/// A JSON response with the registry's media type.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok<T: Serialize>(body: &T) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, body))
}

/// Whether the query string has `name=true`.
fn flag(uri: &Uri, name: &str) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split_once('=') == Some((name, "true")))
    })
}

/// A schema request body: JSON whatever the content type says (clients send
/// the registry's media type, `application/json` or `application/octet-stream`).
fn parse_request(body: &[u8]) -> Result<ParsedSchema, ApiError> {
    let request: SchemaRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(kind) = request.schema_type.as_deref() {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(ApiError::InvalidSchema(format!(
                "schema type {kind} is not supported: this registry takes AVRO only"
            )));
        }
    }
    if !request.references.is_empty() {
        return Err(ApiError::InvalidSchema(
            "schema references are not supported by this registry".into(),
        ));
    }
    ParsedSchema::parse(&request.schema).map_err(|e| ApiError::InvalidSchema(e.to_string()))
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    id.parse()
        .map_err(|_| ApiError::SchemaNotFound(format!("id {id}")))
}

async fn root() -> Result<Response, ApiError> {
    ok(&serde_json::json!({}))
}

async fn schema_types() -> Result<Response, ApiError> {
    ok(&["AVRO"])
}

async fn schema_by_id(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let text = shared
        .read()
        .schema(id)
        .map(|s| s.text.clone())
        .ok_or_else(|| ApiError::SchemaNotFound(format!("id {id}")))?;
    ok(&SchemaText {
        schema: text,
        schema_type: None,
    })
}

async fn schema_versions(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let usages = shared.read().usages(parse_id(&id)?)?;
    ok(&usages)
}

async fn schema_subjects(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut subjects: Vec<String> = shared
        .read()
        .usages(parse_id(&id)?)?
        .into_iter()
        .map(|u| u.subject)
        .collect();
    subjects.dedup();
    ok(&subjects)
}

async fn subjects(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let subjects = shared.read().subjects();
    ok(&subjects)
}

async fn subject_versions(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let versions = shared.read().versions(&subject)?;
    ok(&versions)
}

async fn subject_version(
    State(shared): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let found = shared
        .read()
        .version(&subject, VersionSpec::parse(&version)?)?;
    ok(&found)
}

async fn subject_version_schema(
    State(shared): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let found = shared
        .read()
        .version(&subject, VersionSpec::parse(&version)?)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        found.schema,
    )
        .into_response())
}

async fn lookup(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = parse_request(&body)?;
    let found = shared.read().lookup(&subject, &schema)?;
    ok(&found)
}

async fn register(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = parse_request(&body)?;
    let mut store = shared.writer().await?;
    let decision = shared.read().register(&subject, &schema)?;
    let id = match decision {
        Registration::Existing(id) => id,
        Registration::New(entry) => {
            let id = entry.id;
            tracing::info!(subject, id, version = entry.version, "registering a schema");
            shared
                .append(&mut store, StoreRecord::Schema(entry))
                .await?;
            id
        }
    };
    ok(&RegisteredId { id })
}

async fn check(
    shared: &Shared,
    uri: &Uri,
    subject: &str,
    against: Option<VersionSpec>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let schema = parse_request(body)?;
    let messages = shared.read().check(subject, &schema, against)?;
    ok(&CompatibilityCheck {
        is_compatible: messages.is_empty(),
        messages: flag(uri, "verbose").then_some(messages),
    })
}

async fn check_against_level(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    check(&shared, &uri, &subject, None, &body).await
}

async fn check_against_version(
    State(shared): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let version = VersionSpec::parse(&version)?;
    check(&shared, &uri, &subject, Some(version), &body).await
}

fn level_body(level: CompatibilityLevel) -> serde_json::Value {
    serde_json::json!({ "compatibilityLevel": level })
}

async fn global_config(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let level = shared.read().configured_level(None).unwrap_or_default();
    ok(&level_body(level))
}

async fn subject_config(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let catalog = shared.read();
    let level = match catalog.configured_level(Some(&subject)) {
        Some(level) => level,
        None if flag(&uri, "defaultToGlobal") => catalog.level(&subject),
        None => return Err(ApiError::SubjectLevelNotConfigured(subject)),
    };
    ok(&level_body(level))
}

/// The level of a `PUT /config` body: `{"compatibility": ...}`, or
/// `{"compatibilityLevel": ...}` as some clients send it.
fn parse_level(body: &[u8]) -> Result<CompatibilityLevel, ApiError> {
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let name = ["compatibility", "compatibilityLevel"]
        .iter()
        .find_map(|key| body.get(key).and_then(|v| v.as_str()))
        .ok_or_else(|| {
            ApiError::InvalidCompatibilityLevel("the body has no \"compatibility\" field".into())
        })?;
    name.parse()
        .map_err(|e: crate::compatibility::InvalidLevel| {
            ApiError::InvalidCompatibilityLevel(e.to_string())
        })
}

async fn set_level(
    shared: &Shared,
    subject: Option<String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let level = parse_level(body)?;
    let mut store = shared.writer().await?;
    shared
        .append(&mut store, StoreRecord::Config { subject, level })
        .await?;
    ok(&serde_json::json!({ "compatibility": level }))
}

async fn set_global_config(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_level(&shared, None, &body).await
}

async fn set_subject_config(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_level(&shared, Some(subject), &body).await
}
