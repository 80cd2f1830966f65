//! One application error, mapped to a status and a JSON body `{"error": code, "message": …}`.
//! Messages are French (they reach students and teachers); codes are stable English snake_case.
//! Internal causes go to the log with their whole chain, never to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or a field is invalid. `code` is a stable snake_case name.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("Connexion requise.")]
    Unauthorized,
    /// 401 for a failed sign-in: one message whatever was wrong, so it reveals nothing.
    #[error("{0}")]
    InvalidCredentials(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// 403 with its own code, e.g. `forbidden_origin`, `classroom_archived`.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// 404: also answered for resources that exist but are not the caller's. The text is the
    /// French message shown to the user, e.g. "Exercice introuvable.".
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("Requête trop volumineuse (limite : {limit} octets).")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("Trop de requêtes ; réessayez dans {retry_after_secs} s.")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("Erreur interne.")]
    Internal(anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::Refused { code, .. } => code,
            AppError::Unauthorized => "unauthorized",
            AppError::InvalidCredentials(_) => "invalid_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::UnsupportedMediaType { .. } => "unsupported_media_type",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::Unavailable { .. } => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::TooManyRequests { retry_after_secs }
            | AppError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// A database that is overloaded rather than broken: no pooled connection came within
/// `database.acquire_timeout_secs`, or PostgreSQL cancelled a statement that ran past
/// `database.statement_timeout_ms` (SQLSTATE 57014). The client may retry: 503, not 500.
fn database_overloaded(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57014"),
        _ => false,
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        let overloaded = e
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(database_overloaded);
        if overloaded {
            tracing::warn!(
                error = format!("{e:#}"),
                "database overloaded (pool wait or statement timeout): answered 503"
            );
            return AppError::Unavailable {
                message: "Le serveur est très sollicité ; réessayez dans un instant.".into(),
                retry_after_secs: 2,
            };
        }
        AppError::Internal(e)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        anyhow::Error::from(e).into()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::InvalidCredentials(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Refused { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            AppError::Internal(cause) => {
                // `{:#}` walks the source chain; this is the only place the cause is shown.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "Une erreur interne est survenue.".to_owned()
            }
            other => other.to_string(),
        };
        let retry_after = self.retry_after();
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.insert_header((header::RETRY_AFTER, v));
        }
        response.json(ErrorBody {
            error: self.code(),
            message,
            retry_after,
        })
    }
}
