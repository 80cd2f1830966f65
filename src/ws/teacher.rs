//! A teacher's class dashboard (`GET /ws/classrooms/{id}[?epoch=E&offset=N]`): a snapshot (or the
//! missed deltas when resuming: from the class's ring, and with Redis those older than the ring
//! from the class's shared stream), then every event of the class as a `delta` with increasing
//! offsets. The class's actor fills this socket's bounded queue without waiting; when the queue
//! overflowed, the socket drops its backlog and starts again from a fresh snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::SocketKind;
use super::conn::{Conn, Incoming};
use super::protocol::{self, Close, ServerMessage, SnapshotReason, TeacherRequest};
use crate::actors::classroom::{
    Delta, GetSnapshot, Resync, Subscribe, Subscriber, Subscription, Unsubscribe,
};
use crate::auth::Identity;
use crate::domain::ids::{ClassroomId, UserId};
use crate::error::AppError;
use crate::service::access::{Need, require_classroom};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
struct ResumeQuery {
    epoch: Option<u64>,
    offset: Option<u64>,
}

/// `GET /ws/classrooms/{id}`: 401 signed out, 403 a student (or a foreign origin), 404 a class
/// that is not the caller's — all before any upgrade.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    super::precheck(&req, &state)?;
    let identity = Identity::extract(&req).await?;
    if !identity.role.is_teacher() {
        return Err(AppError::Forbidden("Réservé aux enseignants.".into()).into());
    }
    let classroom = ClassroomId::parse(&path).ok_or(AppError::NotFound("Classe introuvable."))?;
    require_classroom(&state, classroom, identity.user_id, Need::Teacher).await?;
    let query = web::Query::<ResumeQuery>::from_query(req.query_string())
        .map_err(|_| {
            AppError::bad_request(
                "invalid_query",
                "epoch et offset doivent être des entiers positifs.",
            )
        })?
        .into_inner();
    let resume = match (query.epoch, query.offset) {
        (Some(epoch), Some(offset)) => Some((epoch, offset)),
        (None, None) => None,
        _ => {
            return Err(
                AppError::bad_request("invalid_query", "epoch et offset vont ensemble.").into(),
            );
        }
    };
    let (response, conn) =
        Conn::accept(&req, body, &state, identity.user_id, SocketKind::Dashboard).await?;
    let Some(conn) = conn else {
        return Ok(response);
    };
    let dashboard = Dashboard {
        state: state.into_inner(),
        classroom,
        user: identity.user_id,
    };
    actix_web::rt::spawn(dashboard.run(conn, resume));
    Ok(response)
}

struct Dashboard {
    state: Arc<AppState>,
    classroom: ClassroomId,
    user: UserId,
}

impl Dashboard {
    async fn run(self, mut conn: Conn, resume: Option<(u64, u64)>) {
        let (tx, mut queue) = mpsc::channel(self.state.settings.ws.outgoing_queue);
        let lagging = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber {
            id: conn.id(),
            tx,
            lagging: lagging.clone(),
        };
        let mut shutdown = self.state.ws.shutdown_signal();
        // Boxed: this task lives as long as the socket, and its state is as large as the largest
        // future it awaits inline (see `ws::student::run`).
        let close = match Box::pin(self.start(&mut conn, &mut queue, subscriber, resume)).await {
            Err(close) => Some(close),
            Ok(()) => {
                self.serve(&mut conn, &mut queue, &lagging, &mut shutdown)
                    .await
            }
        };
        if let Some(addr) = self.state.registry.running_classroom(self.classroom) {
            // If this is lost (mailbox full), the class forgets the subscriber at its next event:
            // its queue is closed by then.
            let _ = addr.try_send(Unsubscribe(conn.id()));
        }
        Box::pin(conn.close(close)).await;
    }

    async fn start(
        &self,
        conn: &mut Conn,
        queue: &mut mpsc::Receiver<Arc<str>>,
        subscriber: Subscriber,
        resume: Option<(u64, u64)>,
    ) -> Result<(), Close> {
        let settings = &self.state.settings.ws;
        conn.send(&ServerMessage::Welcome {
            protocol_version: protocol::PROTOCOL_VERSION,
            role: "teacher",
            user_id: self.user,
            classroom_id: Some(self.classroom),
            heartbeat_interval_secs: settings.heartbeat_interval_secs,
            max_frame_bytes: settings.max_frame_bytes,
        })
        .await?;
        let subscribe = Subscribe { resume, subscriber };
        let subscription = self
            .state
            .registry
            .ask_classroom(self.classroom, subscribe)
            .await
            .map_err(|e| match e {
                // Deleted in between: it is gone for this dashboard.
                AppError::NotFound(_) => Close::GoingAway,
                _ => Close::InternalError,
            })?;
        match subscription {
            Subscription::Snapshot {
                snapshot,
                resume_failed,
            } => {
                let reason = if resume_failed {
                    SnapshotReason::ResumeUnavailable
                } else {
                    SnapshotReason::Connect
                };
                conn.send(&ServerMessage::Snapshot {
                    reason,
                    snapshot: &snapshot,
                })
                .await
            }
            Subscription::Resumed { epoch, missed } => {
                let after = resume.map_or(0, |(_, offset)| offset);
                Box::pin(self.resumed(conn, epoch, after, &missed)).await
            }
            Subscription::Behind {
                epoch,
                after,
                upto,
                then,
            } => {
                // Registered already: later events wait in this socket's queue meanwhile.
                let older = self
                    .state
                    .registry
                    .recent_class_events(self.classroom, epoch, after, upto)
                    .await;
                match older {
                    Some(mut missed) => {
                        missed.extend(then);
                        Box::pin(self.resumed(conn, epoch, after, &missed)).await
                    }
                    None => {
                        Box::pin(self.resync(conn, queue, SnapshotReason::ResumeUnavailable)).await
                    }
                }
            }
        }
    }

    /// `resumed`, then exactly the missed deltas.
    async fn resumed(
        &self,
        conn: &mut Conn,
        epoch: u64,
        after: u64,
        missed: &[Delta],
    ) -> Result<(), Close> {
        conn.send(&ServerMessage::Resumed {
            epoch,
            after_offset: after,
            count: missed.len(),
        })
        .await?;
        for delta in missed {
            match delta.frame(epoch) {
                Some(frame) => conn.send_text(&frame).await?,
                None => return Err(Close::InternalError),
            }
        }
        Ok(())
    }

    async fn serve(
        &self,
        conn: &mut Conn,
        queue: &mut mpsc::Receiver<Arc<str>>,
        lagging: &AtomicBool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Close> {
        let mut heartbeat = Conn::heartbeat(&self.state.settings.ws);
        if *shutdown.borrow() {
            return Some(Close::GoingAway);
        }
        loop {
            let step = tokio::select! {
                // First: once the session has ended, the class is not shown a moment longer.
                biased;
                () = conn.ticket.session_ended() => Err(Some(Close::SessionEnded)),
                _ = shutdown.changed() => Err(Some(Close::GoingAway)),
                frame = queue.recv() => match frame {
                    Some(_) if lagging.load(Ordering::Acquire) => {
                        Box::pin(self.resync(conn, queue, SnapshotReason::Lagged)).await.map_err(Some)
                    }
                    // A wake-up from the class (see `ClassroomActor::restart_stream`), not a delta.
                    Some(frame) if frame.is_empty() => Ok(()),
                    Some(frame) => Box::pin(conn.send_text(&frame)).await.map_err(Some),
                    // The class's actor stopped (the server is stopping, or the class was deleted).
                    None => Err(Some(Close::GoingAway)),
                },
                item = conn.stream.recv() => match Box::pin(conn.incoming(item)).await {
                    Incoming::Text(text) => Box::pin(self.handle(conn, &text)).await.map_err(Some),
                    Incoming::Nothing => Ok(()),
                    Incoming::End(close) => Err(close),
                },
                _ = heartbeat.tick() => {
                    Box::pin(conn.beat(&self.state.auth.sessions)).await.map_err(Some)
                }
            };
            if let Err(close) = step {
                return close;
            }
        }
    }

    /// A fresh start for this socket (its queue overflowed, or a resume found its events gone):
    /// empty the queue, then send a snapshot with `reason`; the class fills the queue again from
    /// the snapshot's offset on.
    async fn resync(
        &self,
        conn: &mut Conn,
        queue: &mut mpsc::Receiver<Arc<str>>,
        reason: SnapshotReason,
    ) -> Result<(), Close> {
        while queue.try_recv().is_ok() {}
        let snapshot = self
            .state
            .registry
            .ask_classroom(self.classroom, Resync(conn.id()))
            .await
            .map_err(|_| Close::InternalError)?
            // The class restarted and forgot this socket: reconnecting resubscribes.
            .ok_or(Close::GoingAway)?;
        conn.send(&ServerMessage::Snapshot {
            reason,
            snapshot: &snapshot,
        })
        .await
    }

    async fn handle(&self, conn: &mut Conn, text: &str) -> Result<(), Close> {
        match protocol::parse::<TeacherRequest>(text, &TeacherRequest::TYPES)? {
            TeacherRequest::Ping => conn.send(&ServerMessage::Pong).await,
            TeacherRequest::GetSnapshot => {
                match self
                    .state
                    .registry
                    .ask_classroom(self.classroom, GetSnapshot)
                    .await
                {
                    Ok(snapshot) => {
                        conn.send(&ServerMessage::Snapshot {
                            reason: SnapshotReason::Requested,
                            snapshot: &snapshot,
                        })
                        .await
                    }
                    Err(e) => conn.send_error(&e, None, None).await,
                }
            }
        }
    }
}
