//! `Json<T>`: actix-web's JSON extractor (same limits, content type and error answers, set by
//! `http::json_config`), plus the text check every body gets: a string holding NUL anywhere in
//! the body answers 400 `invalid_text` before any handler runs, so no text a database cannot
//! store reaches SQL (PostgreSQL refuses NUL with an error; `domain::text`).

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::text::{INVALID_TEXT, json_storable};
use crate::error::AppError;

/// A JSON body whose every string can be stored.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Parsed to a `Value` first (bodies are small: `server.max_body_bytes`), checked, then
        // turned into `T`.
        let value = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            if !json_storable(&value) {
                return Err(AppError::bad_request("invalid_text", INVALID_TEXT).into());
            }
            serde_json::from_value(value).map(Json).map_err(|e| {
                AppError::bad_request("invalid_body", format!("Corps JSON invalide : {e}")).into()
            })
        })
    }
}
