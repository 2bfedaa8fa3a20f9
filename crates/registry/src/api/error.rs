//! Failures of REST calls, with Confluent's HTTP statuses and error codes so
//! Confluent clients recognise them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::wire::ErrorBody;

/// A REST call that failed, with the Confluent error code it answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found: {0}.")]
    SchemaNotFound(String),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        subject: String,
        details: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level: {0}")]
    InvalidCompatibilityLevel(String),
    #[error("Unprocessable request body: {0}")]
    BadRequest(String),
    #[error("Error in the backend data store: {0}")]
    Store(String),
}

impl ApiError {
    /// The HTTP status and Confluent error code of this failure.
    pub fn status_and_code(&self) -> (StatusCode, u32) {
        match self {
            ApiError::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            ApiError::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            ApiError::SchemaNotFound(_) => (StatusCode::NOT_FOUND, 40403),
            ApiError::SubjectLevelNotConfigured(_) => (StatusCode::NOT_FOUND, 40408),
            ApiError::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            ApiError::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            ApiError::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            ApiError::InvalidCompatibilityLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            ApiError::BadRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, 422),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "schema registry request failed");
        }
        super::json(
            status,
            &ErrorBody {
                error_code,
                message: self.to_string(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_answer_with_confluent_codes() {
        let table = [
            (ApiError::SubjectNotFound("s".into()), 404, 40401),
            (
                ApiError::VersionNotFound {
                    subject: "s".into(),
                    version: "3".into(),
                },
                404,
                40402,
            ),
            (ApiError::SchemaNotFound("7".into()), 404, 40403),
            (ApiError::SubjectLevelNotConfigured("s".into()), 404, 40408),
            (
                ApiError::Incompatible {
                    subject: "s".into(),
                    details: vec![],
                },
                409,
                409,
            ),
            (ApiError::InvalidSchema("x".into()), 422, 42201),
            (ApiError::InvalidVersion("x".into()), 422, 42202),
            (ApiError::InvalidCompatibilityLevel("x".into()), 422, 42203),
            (ApiError::BadRequest("x".into()), 422, 422),
            (ApiError::Store("down".into()), 500, 50001),
        ];
        for (error, status, code) in table {
            let (s, c) = error.status_and_code();
            assert_eq!((s.as_u16(), c), (status, code), "{error}");
        }
    }
}
