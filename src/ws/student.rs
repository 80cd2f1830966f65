//! A student's socket (`GET /ws`): submissions, hints, progress and presence in; results, badges,
//! achievements and level-ups out — including those of attempts sent over HTTP or from another
//! tab, which the student's actor pushes to the socket's bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use tokio::sync::{mpsc, watch};

use super::SocketKind;
use super::conn::{Conn, Incoming};
use super::protocol::{self, Close, ServerMessage, StudentRequest};
use crate::actors::student::{
    AttachSocket, DetachSocket, GetProgress, SetActivity, SocketSink, StudentPush,
};
use crate::auth::Identity;
use crate::domain::accounts::Role;
use crate::domain::ids::UserId;
use crate::error::AppError;
use crate::service::submit::{AttemptBody, record_attempt};
use crate::service::views::{progress_view, reveal};
use crate::state::AppState;

/// `GET /ws`: refused with 401/403 as plain HTTP before any upgrade.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    super::precheck(&req, &state)?;
    let identity = Identity::extract(&req).await?;
    if identity.role != Role::Student {
        return Err(AppError::Forbidden(
            "Réservé aux élèves : le tableau de bord d'une classe est sur /ws/classrooms/{id}."
                .into(),
        )
        .into());
    }
    let (response, conn) =
        Conn::accept(&req, body, &state, identity.user_id, SocketKind::Student).await?;
    let Some(conn) = conn else {
        return Ok(response);
    };
    actix_web::rt::spawn(run(conn, state.into_inner(), identity.user_id));
    Ok(response)
}

async fn run(mut conn: Conn, state: Arc<AppState>, user: UserId) {
    let settings = state.settings.ws.clone();
    let (tx, mut pushes) = mpsc::channel(settings.outgoing_queue);
    let slow = Arc::new(AtomicBool::new(false));
    let sink = SocketSink {
        id: conn.id(),
        tx,
        slow: slow.clone(),
    };
    let mut shutdown = state.ws.shutdown_signal();
    // The welcome's and the socket's end's futures are boxed: this task lives as long as the
    // socket, and its state is as large as the largest future it awaits inline (docs/benchmarks.md,
    // "Resident memory per connected student").
    let close = match Box::pin(start(&mut conn, &state, user, sink)).await {
        Err(close) => Some(close),
        Ok(()) => serve(&mut conn, &state, user, &mut pushes, &slow, &mut shutdown).await,
    };
    // Whatever ended the socket, the actor forgets it (and the student may go offline). Not
    // restarted for that: an actor that stopped has forgotten the socket already.
    if let Some(addr) = state.registry.running_student(user) {
        let detach = addr.send(DetachSocket(conn.id()));
        let _ = Box::pin(tokio::time::timeout(
            state.registry.request_timeout(),
            detach,
        ))
        .await;
    }
    Box::pin(conn.close(close)).await;
}

/// Welcome, then the student's progress (the actor now pushes to this socket).
async fn start(
    conn: &mut Conn,
    state: &AppState,
    user: UserId,
    sink: SocketSink,
) -> Result<(), Close> {
    let settings = &state.settings.ws;
    conn.send(&ServerMessage::Welcome {
        protocol_version: protocol::PROTOCOL_VERSION,
        role: "student",
        user_id: user,
        classroom_id: None,
        heartbeat_interval_secs: settings.heartbeat_interval_secs,
        max_frame_bytes: settings.max_frame_bytes,
    })
    .await?;
    let progress = state
        .registry
        .ask_student(user, AttachSocket(sink))
        .await
        .map_err(|_| Close::InternalError)?;
    conn.send(&ServerMessage::Progress(&progress_view(&progress)))
        .await
}

/// The socket's life; answers the close code (`None`: the connection is already gone).
async fn serve(
    conn: &mut Conn,
    state: &AppState,
    user: UserId,
    pushes: &mut mpsc::Receiver<StudentPush>,
    slow: &AtomicBool,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Close> {
    let mut heartbeat = Conn::heartbeat(&state.settings.ws);
    if *shutdown.borrow() {
        return Some(Close::GoingAway);
    }
    loop {
        let step = tokio::select! {
            // First: once the session has ended, nothing more it sent is handled.
            biased;
            () = conn.ticket.session_ended() => Err(Some(Close::SessionEnded)),
            _ = shutdown.changed() => Err(Some(Close::GoingAway)),
            push = pushes.recv() => match push {
                Some(StudentPush::Answer(answer)) => {
                    Box::pin(send_answer(conn, &answer)).await.map_err(Some)
                }
                // The actor dropped this socket: its queue was full, or the actor stopped.
                None if slow.load(Ordering::Acquire) => Err(Some(Close::SlowConsumer)),
                None => Err(Some(Close::GoingAway)),
            },
            // What a message or a beat does is boxed, for as long as it runs: inline, the
            // largest of them (a submission) would be part of every idle socket's state.
            item = conn.stream.recv() => match Box::pin(conn.incoming(item)).await {
                Incoming::Text(text) => {
                    Box::pin(handle(conn, state, user, &text)).await.map_err(Some)
                }
                Incoming::Nothing => Ok(()),
                Incoming::End(close) => Err(close),
            },
            _ = heartbeat.tick() => Box::pin(conn.beat(&state.auth.sessions)).await.map_err(Some),
        };
        if let Err(close) = step {
            return close;
        }
    }
}

async fn send_answer(
    conn: &mut Conn,
    answer: &crate::actors::student::SubmitAnswer,
) -> Result<(), Close> {
    for message in protocol::answer_messages(answer) {
        conn.send(&message).await?;
    }
    Ok(())
}

/// One request. Refusals (validation, rate limit, busy) answer `error`; the socket stays open.
async fn handle(conn: &mut Conn, state: &AppState, user: UserId, text: &str) -> Result<(), Close> {
    match protocol::parse::<StudentRequest>(text, &StudentRequest::TYPES)? {
        StudentRequest::Submit {
            exercise_id,
            attempt_id,
            duration_ms,
            answer,
            passed,
            score,
        } => {
            let body = AttemptBody {
                attempt_id: attempt_id.clone(),
                duration_ms,
                answer,
                passed,
                score,
            };
            let exercise = exercise_id.to_string();
            let recorded = match body.into_submission() {
                Ok(submission) => {
                    record_attempt(state, user, &exercise, submission, Some(conn.id())).await
                }
                Err(e) => Err(e),
            };
            match recorded {
                Ok(answer) => send_answer(conn, &answer).await,
                Err(e) => conn.send_error(&e, attempt_id.as_deref(), None).await,
            }
        }
        StudentRequest::Focus { exercise_id } => {
            activity(conn, state, user, exercise_id, false).await
        }
        StudentRequest::RunningTests { exercise_id } => {
            activity(conn, state, user, Some(exercise_id), true).await
        }
        StudentRequest::HintReveal { hint_id } => match reveal(state, user, hint_id).await {
            Ok(body) => conn.send(&ServerMessage::HintRevealed(&body)).await,
            Err(e) => conn.send_error(&e, None, Some(hint_id)).await,
        },
        StudentRequest::GetProgress => match state.registry.ask_student(user, GetProgress).await {
            Ok(p) => {
                conn.send(&ServerMessage::Progress(&progress_view(&p)))
                    .await
            }
            Err(e) => conn.send_error(&e, None, None).await,
        },
        StudentRequest::Ping => conn.send(&ServerMessage::Pong).await,
    }
}

async fn activity(
    conn: &mut Conn,
    state: &AppState,
    user: UserId,
    exercise_id: Option<crate::domain::ids::ExerciseId>,
    running_tests: bool,
) -> Result<(), Close> {
    if let Some(id) = exercise_id
        && state.catalogue.exercise(id).is_none()
    {
        return conn
            .send_error(&AppError::NotFound("Exercice introuvable."), None, None)
            .await;
    }
    let msg = SetActivity {
        exercise_id,
        running_tests,
    };
    match state.registry.ask_student(user, msg).await {
        Ok(()) => Ok(()),
        Err(e) => conn.send_error(&e, None, None).await,
    }
}
