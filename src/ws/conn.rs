//! What every socket does whatever its role: the welcome, reading frames within the size and rate
//! limits, heartbeats, writes that cannot block forever, and the close with a documented code.

use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, ProtocolError, Session};
use tokio::time::{Interval, MissedTickBehavior};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::Stream;

use super::frame_guard::{GuardedPayload, is_too_big};
use super::protocol::{Close, ServerMessage};
use super::{SocketKind, SocketTicket};
use crate::auth::Sessions;
use crate::auth::request_token;
use crate::auth::session::token_hash;
use crate::config::WsSettings;
use crate::domain::ids::UserId;
use crate::metrics::{Limit, Refusals};
use crate::state::AppState;

/// The request payload's stream type (`actix_http::BoxedPayloadStream`).
type BoxedPayloadStream = std::pin::Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>>;

/// What one read from the socket amounts to.
pub enum Incoming {
    /// A text message to handle.
    Text(String),
    /// A control frame, already dealt with.
    Nothing,
    /// The socket is over: close it with this code (`None`: it is gone, nothing to send).
    End(Option<Close>),
}

pub struct Conn {
    session: Session,
    pub stream: AggregatedMessageStream,
    pub ticket: SocketTicket,
    write_timeout: Duration,
    client_timeout: Duration,
    last_seen: Instant,
    bucket: TokenBucket,
    /// Counts the sockets closed by the message rate limit (`/metrics`).
    refusals: Refusals,
}

impl Conn {
    pub fn new(
        session: Session,
        stream: actix_ws::MessageStream,
        ticket: SocketTicket,
        settings: &WsSettings,
        refusals: Refusals,
    ) -> Conn {
        let stream = stream
            .max_frame_size(settings.max_frame_bytes)
            .aggregate_continuations()
            .max_continuation_size(settings.max_frame_bytes);
        Conn {
            session,
            stream,
            ticket,
            write_timeout: Duration::from_secs(settings.client_timeout_secs),
            client_timeout: Duration::from_secs(settings.client_timeout_secs),
            last_seen: Instant::now(),
            bucket: TokenBucket::new(settings.messages_per_sec, settings.message_burst),
            refusals,
        }
    }

    /// Upgrades the request and admits the socket under the per-user limit (over every instance's
    /// sockets with Redis). Over the limit the
    /// socket is still upgraded — so that the browser sees the close code, a refused upgrade
    /// shows as nothing — then closed with `TooManySockets`, and `None` is returned.
    ///
    /// The incoming bytes go through a `GuardedPayload` before actix-ws sees them, so that a frame
    /// declared longer than `ws.max_frame_bytes` is refused at its header (see `frame_guard`).
    ///
    /// The socket is bound to the request's session: when it ends, the socket closes with
    /// `SessionEnded`.
    pub async fn accept(
        req: &HttpRequest,
        body: web::Payload,
        state: &AppState,
        user: UserId,
        kind: SocketKind,
    ) -> actix_web::Result<(HttpResponse, Option<Conn>)> {
        let settings = &state.settings.ws;
        // The identity was resolved from this token just before: it is there.
        let session_hash = request_token(req)
            .map(|token| token_hash(&token))
            .unwrap_or_default();
        let ticket = state
            .ws
            .admit_everywhere(user, session_hash, kind, settings.max_sockets_per_user)
            .await;
        let guarded: BoxedPayloadStream = Box::pin(GuardedPayload::new(
            body.into_inner(),
            settings.max_frame_bytes,
        ));
        let body = web::Payload::from_request(req, &mut Payload::from(guarded)).await?;
        let (response, session, stream) = actix_ws::handle(req, body)?;
        let Some(ticket) = ticket else {
            state.metrics.refusals.count(Limit::WsSockets);
            actix_web::rt::spawn(async move {
                let _ = session.close(Some(Close::TooManySockets.frame())).await;
            });
            return Ok((response, None));
        };
        let refusals = state.metrics.refusals.clone();
        Ok((
            response,
            Some(Conn::new(session, stream, ticket, settings, refusals)),
        ))
    }

    pub fn id(&self) -> u64 {
        self.ticket.id
    }

    /// The heartbeat's clock: first tick one interval from now.
    pub fn heartbeat(settings: &WsSettings) -> Interval {
        let every = Duration::from_secs(settings.heartbeat_interval_secs);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    }

    /// Writes one text frame. A client that does not read for `client_timeout_secs` is a slow
    /// consumer: its task must not hang on it.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Close> {
        match tokio::time::timeout(self.write_timeout, self.session.text(text.to_owned())).await {
            Ok(Ok(())) => Ok(()),
            // The connection is gone; the caller ends the task.
            Ok(Err(_closed)) => Err(Close::GoingAway),
            Err(_elapsed) => Err(Close::SlowConsumer),
        }
    }

    pub async fn send(&mut self, message: &ServerMessage<'_>) -> Result<(), Close> {
        match message.encode() {
            Some(text) => self.send_text(&text).await,
            None => Err(Close::InternalError),
        }
    }

    /// Sends a refusal the socket survives.
    pub async fn send_error(
        &mut self,
        error: &crate::error::AppError,
        attempt_id: Option<&str>,
        hint_id: Option<crate::domain::ids::HintId>,
    ) -> Result<(), Close> {
        if let crate::error::AppError::Internal(e) = error {
            tracing::error!(error = format!("{e:#}"), "socket request failed");
        }
        let retry_after_secs = match error {
            crate::error::AppError::TooManyRequests { retry_after_secs }
            | crate::error::AppError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let message = error.to_string();
        self.send(&ServerMessage::Error {
            code: error.code(),
            message: &message,
            attempt_id,
            hint_id,
            retry_after_secs,
        })
        .await
    }

    /// Turns one read into what the session must do, answering pings and enforcing the limits.
    pub async fn incoming(
        &mut self,
        item: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Incoming {
        let message = match item {
            None => return Incoming::End(None),
            Some(Ok(message)) => message,
            Some(Err(ProtocolError::Overflow)) => return Incoming::End(Some(Close::TooBig)),
            // The continuation limit reports itself as this I/O error (actix-ws 0.4).
            Some(Err(ProtocolError::Io(e))) if e.to_string().contains("maximum continuation") => {
                return Incoming::End(Some(Close::TooBig));
            }
            // The frame guard refused a header declaring too much.
            Some(Err(ProtocolError::Io(e))) if is_too_big(&e) => {
                return Incoming::End(Some(Close::TooBig));
            }
            // A text frame that is not UTF-8, or a frame with reserved bits set: the frame is
            // bad, the connection is fine — say so with a close frame.
            Some(Err(ProtocolError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Incoming::End(Some(Close::BadMessage));
            }
            Some(Err(ProtocolError::Io(_))) => return Incoming::End(None),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "socket protocol error");
                return Incoming::End(Some(Close::BadMessage));
            }
        };
        self.last_seen = Instant::now();
        match message {
            AggregatedMessage::Close(_) => Incoming::End(Some(Close::Normal)),
            // Every other frame counts, pongs too: unsolicited pongs cost the server a wake-up
            // each, as any message does.
            other => {
                if !self.bucket.take() {
                    self.refusals.count(Limit::WsMessages);
                    return Incoming::End(Some(Close::RateLimited));
                }
                match other {
                    AggregatedMessage::Pong(_) => Incoming::Nothing,
                    AggregatedMessage::Text(text) => Incoming::Text(text.to_string()),
                    AggregatedMessage::Ping(bytes) => {
                        let pong =
                            tokio::time::timeout(self.write_timeout, self.session.pong(&bytes));
                        match pong.await {
                            Ok(Ok(())) => Incoming::Nothing,
                            Ok(Err(_)) => Incoming::End(None),
                            Err(_) => Incoming::End(Some(Close::SlowConsumer)),
                        }
                    }
                    // JSON text only.
                    _ => Incoming::End(Some(Close::BadMessage)),
                }
            }
        }
    }

    /// On each heartbeat tick: close a silent client, close the socket of a session that ended
    /// without the bus saying so (expired, ended by the command line or by an instance the bus
    /// does not reach), else ping it.
    pub async fn beat(&mut self, sessions: &Sessions) -> Result<(), Close> {
        if self.last_seen.elapsed() > self.client_timeout {
            return Err(Close::HeartbeatTimeout);
        }
        // Cached like every request's check: the database is asked at most once per
        // `auth.session_cache_ttl_secs` per session. A failed or slow check keeps the socket.
        let check = sessions.resolve_hash(self.ticket.session_hash.clone());
        if let Ok(Ok(None)) = tokio::time::timeout(self.write_timeout, check).await {
            return Err(Close::SessionEnded);
        }
        match tokio::time::timeout(self.write_timeout, self.session.ping(b"")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Close::GoingAway),
            Err(_) => Err(Close::SlowConsumer),
        }
    }

    /// Sends the close frame (briefly: a client that does not read will not get it) and ends
    /// the socket; the ticket frees the user's slot.
    pub async fn close(self, close: Option<Close>) {
        let Some(close) = close else {
            return;
        };
        tracing::debug!(code = close.code(), "closing socket");
        let grace = self.write_timeout.min(Duration::from_secs(2));
        let _ = tokio::time::timeout(grace, self.session.close(Some(close.frame()))).await;
    }
}

/// Messages allowed per connection: `rate` per second on average, `burst` at once.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses() {
        let mut b = TokenBucket::new(1, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
