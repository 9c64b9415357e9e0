//! The one error shape of the API: `{"error": {"kind": .., "message": .., ..}}`.

use std::borrow::Cow;

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};

use crate::{ControlError, EndState, EraseError, TransferError};

/// An API error: a status, a kind, a sentence, and an optional extra field.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: Cow<'static, str>,
    message: String,
    ended: Option<EndState>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind: kind.into(),
            message: message.into(),
            ended: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn unknown() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "unknown", "unknown transfer id")
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub(crate) fn mailbox(e: actix::MailboxError) -> Self {
        ApiError::unavailable(format!("the engine is not running ({e})"))
    }

    /// A transfer the engine refused at submit.
    pub(crate) fn refused(e: &TransferError) -> Self {
        let status = match e {
            TransferError::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.kind().as_str(), e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Unknown => ApiError::unknown(),
            ControlError::Stopped => ApiError::unavailable(e.to_string()),
            ControlError::NotActive(end) => ApiError {
                ended: Some(end),
                ..ApiError::new(StatusCode::CONFLICT, "not_active", e.to_string())
            },
        }
    }
}

impl From<EraseError> for ApiError {
    fn from(e: EraseError) -> Self {
        match e {
            EraseError::Unknown => ApiError::unknown(),
            EraseError::Stopped => ApiError::unavailable(e.to_string()),
            EraseError::Active => ApiError::new(
                StatusCode::CONFLICT,
                "active",
                "the transfer has not ended: cancel it first",
            ),
        }
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(e: JsonPayloadError) -> Self {
        match &e {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    e.to_string(),
                )
            }
            JsonPayloadError::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (`Content-Type: application/json`)",
            ),
            _ => ApiError::bad_request(format!("invalid JSON body: {e}")),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        ApiError::bad_request(format!("invalid path: {e}"))
    }
}

impl From<QueryPayloadError> for ApiError {
    fn from(e: QueryPayloadError) -> Self {
        ApiError::bad_request(format!("invalid query: {e}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut inner = serde_json::json!({ "kind": self.kind, "message": self.message });
        if let Some(end) = self.ended {
            inner["ended"] = serde_json::json!(end);
        }
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(serde_json::json!({ "error": inner }))
    }
}
