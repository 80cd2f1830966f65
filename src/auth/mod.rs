//! Who is calling: sessions, the `Identity` extractors, password hashing, throttling and the
//! Origin check. Routes take an `Identity` (any signed-in user), a `StudentIdentity` or a
//! `TeacherIdentity` argument; the extractor answers 401 when nobody is signed in and 403 when the
//! role is wrong. Ownership (this classroom is yours) is checked by the route, which answers 404.

pub mod origin;
pub mod password;
pub mod session;
pub mod throttle;

use std::net::{IpAddr, Ipv4Addr};

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::config::AuthSettings;
use crate::domain::accounts::Role;
use crate::domain::ids::UserId;
use crate::error::AppError;
use crate::metrics::Refusals;
use crate::store::Store;

pub use session::{NewSession, Sessions};
pub use throttle::AuthThrottle;

/// The session cookie: HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site
/// POSTs), Secure when configured.
pub const SESSION_COOKIE: &str = "nsi_session";

/// A signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
}

/// A signed-in student (403 for teachers and admins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudentIdentity {
    pub user_id: UserId,
}

/// A signed-in teacher or admin (403 for students).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeacherIdentity {
    pub user_id: UserId,
    pub role: Role,
}

/// Everything about authentication that lives as long as the server.
#[derive(Debug)]
pub struct Auth {
    pub sessions: Sessions,
    pub throttle: AuthThrottle,
    cookie_secure: bool,
    trust_forwarded_for: bool,
}

impl Auth {
    /// `refusals` counts what the throttles refuse; `limits`: the throttles shared with the
    /// other instances (Redis), when configured.
    pub fn new(
        settings: &AuthSettings,
        store: Store,
        bus: std::sync::Arc<dyn crate::bus::EventBus>,
        refusals: Refusals,
        limits: Option<std::sync::Arc<crate::cluster::limits::SharedLimits>>,
    ) -> Auth {
        Auth {
            sessions: Sessions::new(settings, store, bus),
            throttle: AuthThrottle::new(settings, refusals, limits),
            cookie_secure: settings.cookie_secure,
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }

    /// Ended sessions leave the cache (the bus delivers them, from every instance).
    pub fn session_sink(
        self: &std::sync::Arc<Self>,
    ) -> std::sync::Weak<dyn crate::bus::SessionSink> {
        let sink: std::sync::Arc<dyn crate::bus::SessionSink> = self.clone();
        std::sync::Arc::downgrade(&sink)
    }

    /// The cookie that carries a new session's token.
    pub fn session_cookie(&self, token: &str) -> Cookie<'static> {
        Cookie::build(SESSION_COOKIE, token.to_owned())
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.cookie_secure)
            .max_age(time::Duration::seconds(self.sessions.lifetime_secs()))
            .finish()
    }

    /// The cookie that makes the browser forget the session.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.session_cookie("");
        cookie.make_removal();
        cookie
    }

    /// The client's address, for throttling: the TCP peer, or behind a trusted proxy the last
    /// `X-Forwarded-For` entry (the one the proxy added; earlier ones are the client's to choose).
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        if self.trust_forwarded_for
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|last| last.trim().parse::<IpAddr>().ok())
        {
            return ip;
        }
        req.peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
    }
}

/// The token a request carries: `Authorization: Bearer …` first, else the session cookie.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    if let Some(token) = bearer_token(req) {
        return Some(token);
    }
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// The token of an `Authorization: Bearer` header, if there is one.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn resolve(req: &HttpRequest) -> LocalBoxFuture<'static, Result<Identity, AppError>> {
    // Registered as app data of its own by `startup` (auth sits below `AppState`).
    let auth = req.app_data::<web::Data<Auth>>().cloned();
    let token = request_token(req);
    Box::pin(async move {
        let auth = auth.ok_or_else(|| anyhow::anyhow!("Auth is not registered"))?;
        let token = token.ok_or(AppError::Unauthorized)?;
        auth.sessions
            .resolve(&token)
            .await?
            .ok_or(AppError::Unauthorized)
    })
}

impl FromRequest for Identity {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        resolve(req)
    }
}

impl FromRequest for StudentIdentity {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = resolve(req);
        Box::pin(async move {
            let identity = identity.await?;
            match identity.role {
                Role::Student => Ok(StudentIdentity {
                    user_id: identity.user_id,
                }),
                _ => Err(AppError::Forbidden("Réservé aux élèves.".into())),
            }
        })
    }
}

impl FromRequest for TeacherIdentity {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = resolve(req);
        Box::pin(async move {
            let identity = identity.await?;
            if identity.role.is_teacher() {
                Ok(TeacherIdentity {
                    user_id: identity.user_id,
                    role: identity.role,
                })
            } else {
                Err(AppError::Forbidden("Réservé aux enseignants.".into()))
            }
        })
    }
}

impl crate::bus::SessionSink for Auth {
    fn session_ended(&self, ended: &crate::bus::SessionEnded) {
        self.sessions.session_ended(ended);
    }

    fn sessions_unknown(&self) {
        self.sessions.sessions_unknown();
    }
}
