//! Live WebSockets: `GET /ws` for a signed-in student, `GET /ws/classrooms/{id}` for the class's
//! teacher. Who may connect is checked before the upgrade (plain HTTP errors); then each socket is
//! one task (`conn::Conn`) driven by a `select!` over its frames, its bounded queue and a
//! heartbeat. The hot state stays in the actors: this layer only translates.

pub mod conn;
pub mod frame_guard;
pub mod protocol;
pub mod student;
pub mod teacher;

use actix_web::{HttpRequest, web};
use serde::Deserialize;

use crate::error::AppError;
use crate::state::AppState;
// The hub lives below the adapters (`/metrics` and the shutdown read it too); re-exported here
// because the sockets are its main users.
pub use crate::sockets::{SocketKind, SocketTicket, WsHub};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(student::connect))
        .route("/ws/classrooms/{id}", web::get().to(teacher::connect));
}

/// Query parameters both endpoints accept: `v`, the protocol version the client speaks.
#[derive(Debug, Default, Deserialize)]
struct VersionQuery {
    v: Option<u32>,
}

/// Checks what must be refused before the upgrade: a foreign `Origin` (cross-site WebSocket
/// hijacking: the browser sends the cookie whatever page opens the socket) and a protocol version
/// we do not speak.
fn precheck(req: &HttpRequest, state: &AppState) -> Result<(), AppError> {
    // As for other requests: a bearer token is not an ambient credential, no browser adds it.
    if crate::auth::bearer_token(req).is_none() {
        crate::auth::origin::check_origin(req, &state.settings.server.allowed_origins)?;
    }
    let query = web::Query::<VersionQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    match query.v {
        Some(v) if v != protocol::PROTOCOL_VERSION => Err(AppError::bad_request(
            "unsupported_protocol",
            format!(
                "Version du protocole non prise en charge (le serveur parle la version {}).",
                protocol::PROTOCOL_VERSION
            ),
        )),
        _ => Ok(()),
    }
}
