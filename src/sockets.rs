//! This instance's live sockets: each user's (the per-user cap), the session each is bound to (an
//! ended session closes its sockets), how many of each kind (for `/metrics`), and the shutdown
//! signal that closes them all. Shared by the WebSocket adapter, the bus (`SessionSink`),
//! `/metrics` and the shutdown sequence, so it lives below all of them.
//!
//! With Redis, the per-user cap counts every instance's sockets: each socket admitted here also
//! has a record in Redis (`cluster::limits`), refreshed every third of its lifetime while it is
//! open and removed when it closes, so an instance that dies stops counting within one lifetime
//! (`ws.client_timeout_secs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Notify, watch};

use crate::bus::{SessionEnded, SessionSink};
use crate::cluster::limits::SharedLimits;
use crate::domain::ids::UserId;
use crate::metrics::Limit;

/// A socket record lives at least this long (refreshed every third of it).
const MIN_RECORD_TTL: Duration = Duration::from_secs(3);

/// The sockets of this instance: each user's, with their sessions, and the shutdown signal.
#[derive(Debug)]
pub struct WsHub {
    per_user: DashMap<UserId, Vec<Bound>>,
    /// Open sockets by kind, for `/metrics`.
    open: [AtomicUsize; 2],
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// The cap over every instance's sockets, with Redis.
    shared: Option<SharedSockets>,
}

/// The records of this instance's sockets in Redis, and how long each lives unrefreshed.
#[derive(Debug)]
struct SharedSockets {
    limits: Arc<SharedLimits>,
    ttl: Duration,
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
            shared: None,
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
    /// Its record is (or is to be) in Redis: refreshed while open, removed on close.
    recorded: bool,
}

impl WsHub {
    /// A hub whose per-user cap counts the sockets of every instance when `limits` is set (each
    /// record living `record_ttl`, refreshed every third of it until shutdown), else this
    /// instance's only. Must be called inside a Tokio runtime when `limits` is set.
    pub fn new(limits: Option<Arc<SharedLimits>>, record_ttl: Duration) -> Arc<WsHub> {
        let shared = limits.map(|limits| SharedSockets {
            limits,
            ttl: record_ttl.max(MIN_RECORD_TTL),
        });
        let hub = Arc::new(WsHub {
            shared,
            ..WsHub::default()
        });
        if let Some(shared) = &hub.shared {
            spawn_refresher(
                Arc::downgrade(&hub),
                shared.limits.clone(),
                shared.ttl,
                hub.shutdown_signal(),
            );
        }
        hub
    }

    /// [`Self::admit`], then, with Redis, the same cap over every instance's sockets: over it the
    /// socket is refused (`None`). Redis failing leaves the decision to this instance's count
    /// (counted in `/metrics`); the record is written by the next refresh once Redis is back.
    pub async fn admit_everywhere(
        self: &Arc<Self>,
        user: UserId,
        session_hash: String,
        kind: SocketKind,
        max: usize,
    ) -> Option<SocketTicket> {
        let ticket = self.admit(user, session_hash, kind, max)?;
        let Some(shared) = &self.shared else {
            return Some(ticket);
        };
        let record = self.record_name(ticket.id);
        let admitted = shared
            .limits
            .admit_socket(user, &record, max, shared.ttl)
            .await;
        if admitted == Some(false) {
            // Dropping the ticket frees the local slot; there is no record to remove.
            return None;
        }
        if let Some(mut sockets) = self.per_user.get_mut(&user)
            && let Some(bound) = sockets.iter_mut().find(|b| b.id == ticket.id)
        {
            bound.recorded = true;
        }
        Some(ticket)
    }

    /// A socket's record name in Redis: unique among the instances.
    fn record_name(&self, id: u64) -> String {
        match &self.shared {
            Some(shared) => format!("{}:{id}", shared.limits.instance_id()),
            None => id.to_string(),
        }
    }

    /// The sockets open here whose records are kept in Redis.
    fn recorded_sockets(&self) -> Vec<(UserId, u64)> {
        self.per_user
            .iter()
            .flat_map(|entry| {
                let user = *entry.key();
                entry
                    .value()
                    .iter()
                    .filter(|b| b.recorded)
                    .map(|b| (user, b.id))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn is_open(&self, user: UserId, id: u64) -> bool {
        self.per_user
            .get(&user)
            .is_some_and(|sockets| sockets.iter().any(|b| b.id == id))
    }

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
            recorded: false,
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
            SessionEnded::AccountViews => {}
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
        let mut recorded = false;
        self.hub.per_user.remove_if_mut(&self.user, |_, sockets| {
            recorded = sockets.iter().any(|b| b.id == id && b.recorded);
            sockets.retain(|b| b.id != id);
            sockets.is_empty()
        });
        if let (true, Some(shared)) = (recorded, &self.hub.shared) {
            remove_record(&shared.limits, self.user, self.hub.record_name(id));
        }
    }
}

/// Removes a closed socket's record in the background (bounded by `redis.command_timeout_ms`);
/// without a runtime to run it on, the record expires by itself.
fn remove_record(limits: &Arc<SharedLimits>, user: UserId, record: String) {
    let limits = limits.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move { limits.remove_socket(user, &record).await });
        }
        Err(_) => limits.count_lost(Limit::WsSockets),
    }
}

/// Refreshes the records of the hub's open sockets every third of their lifetime, until the
/// server stops or the hub is gone.
fn spawn_refresher(
    hub: Weak<WsHub>,
    limits: Arc<SharedLimits>,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // Stopping (or the hub is gone: the sender with it).
                _ = shutdown.changed() => return,
            }
            let Some(live) = hub.upgrade().map(|hub| hub.recorded_sockets()) else {
                return;
            };
            if live.is_empty() {
                continue;
            }
            let records: Vec<(UserId, String)> = live
                .iter()
                .map(|(user, id)| (*user, format!("{}:{id}", limits.instance_id())))
                .collect();
            limits.refresh_sockets(&records, ttl).await;
            // A socket that closed while its record was being refreshed may have been written
            // back: remove it again.
            let Some(hub) = hub.upgrade() else {
                return;
            };
            for ((user, id), (_, record)) in live.iter().zip(records) {
                if !hub.is_open(*user, *id) {
                    limits.remove_socket(*user, &record).await;
                }
            }
        }
    });
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
