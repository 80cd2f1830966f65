//! This instance's live sockets: each user's (the per-user cap), the session each is bound to (an
//! ended session closes its sockets), how many of each kind (for `/metrics`), and the shutdown
//! signal that closes them all. Shared by the WebSocket adapter, the bus (`SessionSink`),
//! `/metrics` and the shutdown sequence, so it lives below all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::{Notify, watch};

use crate::bus::{SessionEnded, SessionSink};
use crate::domain::ids::UserId;

/// The sockets of this instance: each user's, with their sessions, and the shutdown signal.
#[derive(Debug)]
pub struct WsHub {
    per_user: DashMap<UserId, Vec<Bound>>,
    /// Open sockets by kind, for `/metrics`.
    open: [AtomicUsize; 2],
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Student = 0,
    Dashboard = 1,
}

impl Default for WsHub {
    fn default() -> Self {
        WsHub {
            per_user: DashMap::new(),
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            next_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
        }
    }
}

/// One open socket of a user: the session it was opened with, and how to end it.
#[derive(Debug)]
struct Bound {
    id: u64,
    /// SHA-256 of the session's token (`auth::session::token_hash`).
    session: String,
    ended: Arc<Notify>,
}

impl WsHub {
    /// Counts a new socket for `user`, opened with the session of `session_hash`, or `None` when
    /// they already have `max` open.
    pub fn admit(
        self: &Arc<Self>,
        user: UserId,
        session_hash: String,
        kind: SocketKind,
        max: usize,
    ) -> Option<SocketTicket> {
        let mut sockets = self.per_user.entry(user).or_default();
        if sockets.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(Notify::new());
        sockets.push(Bound {
            id,
            session: session_hash.clone(),
            ended: ended.clone(),
        });
        drop(sockets);
        self.open[kind as usize].fetch_add(1, Ordering::Relaxed);
        Some(SocketTicket {
            hub: self.clone(),
            user,
            kind,
            id,
            session_hash,
            ended,
        })
    }

    /// Sockets open on this instance, of one kind.
    pub fn open_sockets(&self, kind: SocketKind) -> usize {
        self.open[kind as usize].load(Ordering::Relaxed)
    }

    /// Every socket closes with "going away" (the server is stopping).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl SessionSink for WsHub {
    /// Wakes every socket bound to the sessions that ended. A user's own sockets are found by
    /// their id; one session's by a walk over this instance's sockets (a logout is rare, a walk
    /// over a few thousand entries short).
    fn session_ended(&self, ended: &SessionEnded) {
        let end = |sockets: &[Bound], one: Option<&str>| {
            for b in sockets {
                if one.is_none_or(|hash| b.session == hash) {
                    // A permit is kept if the socket is not waiting yet: it ends at its next turn.
                    b.ended.notify_one();
                }
            }
        };
        match ended {
            SessionEnded::User { user_id } => {
                if let Some(sockets) = self.per_user.get(user_id) {
                    end(&sockets[..], None);
                }
            }
            SessionEnded::Session { token_hash } => {
                for sockets in self.per_user.iter() {
                    end(&sockets[..], Some(token_hash));
                }
            }
        }
    }
}

/// One counted socket; dropping it frees the user's slot.
#[derive(Debug)]
pub struct SocketTicket {
    hub: Arc<WsHub>,
    user: UserId,
    kind: SocketKind,
    pub id: u64,
    /// The socket's session (SHA-256 of its token), checked again on heartbeats.
    pub session_hash: String,
    ended: Arc<Notify>,
}

impl SocketTicket {
    /// Completes when the socket's session has ended (`SessionSink::session_ended`).
    pub async fn session_ended(&self) {
        self.ended.notified().await;
    }
}

impl Drop for SocketTicket {
    fn drop(&mut self) {
        self.hub.open[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
        let id = self.id;
        self.hub.per_user.remove_if_mut(&self.user, |_, sockets| {
            sockets.retain(|b| b.id != id);
            sockets.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(hub: &Arc<WsHub>, user: i64, session: &str, kind: SocketKind) -> Option<SocketTicket> {
        hub.admit(UserId(user), session.to_owned(), kind, 2)
    }

    /// Whether the ticket's session-ended signal is already given (without waiting).
    fn is_ended(ticket: &SocketTicket) -> bool {
        use futures_util::FutureExt;
        ticket.session_ended().now_or_never().is_some()
    }

    #[test]
    fn tickets_count_sockets_per_user_and_kind() {
        let hub = Arc::new(WsHub::default());
        let a = admit(&hub, 1, "s1", SocketKind::Student).unwrap();
        let b = admit(&hub, 1, "s1", SocketKind::Student).unwrap();
        assert_ne!(a.id, b.id);
        assert!(admit(&hub, 1, "s2", SocketKind::Student).is_none());
        let other = admit(&hub, 2, "s3", SocketKind::Dashboard).unwrap();
        assert_eq!(hub.open_sockets(SocketKind::Student), 2);
        assert_eq!(hub.open_sockets(SocketKind::Dashboard), 1);
        drop(a);
        assert!(admit(&hub, 1, "s1", SocketKind::Student).is_some());
        drop((b, other));
        assert_eq!(hub.open_sockets(SocketKind::Student), 0);
        assert_eq!(hub.open_sockets(SocketKind::Dashboard), 0);
        assert!(hub.per_user.is_empty());
    }

    #[test]
    fn an_ended_session_ends_its_sockets_only() {
        let hub = Arc::new(WsHub::default());
        let a1 = admit(&hub, 1, "a1", SocketKind::Student).unwrap();
        let a2 = admit(&hub, 1, "a2", SocketKind::Student).unwrap();
        let b = admit(&hub, 2, "b", SocketKind::Dashboard).unwrap();
        hub.session_ended(&SessionEnded::Session {
            token_hash: "a1".into(),
        });
        assert!(is_ended(&a1));
        assert!(!is_ended(&a2) && !is_ended(&b));
        hub.session_ended(&SessionEnded::User { user_id: UserId(1) });
        assert!(is_ended(&a2));
        assert!(!is_ended(&b));
        // Nobody's sockets: nothing happens.
        hub.session_ended(&SessionEnded::User { user_id: UserId(3) });
        assert!(!is_ended(&b));
    }
}
