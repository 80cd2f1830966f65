//! This instance's live sockets: how many each user has open (the per-user cap), how many of
//! each kind (for `/metrics`), their ids, and the shutdown signal that closes them all. Shared by
//! the WebSocket adapter, `/metrics` and the shutdown sequence, so it lives below all three.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::domain::ids::UserId;

/// The sockets of this instance: how many each user has open, their ids, and the shutdown signal.
#[derive(Debug)]
pub struct WsHub {
    per_user: DashMap<UserId, usize>,
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

impl WsHub {
    /// Counts a new socket for `user`, or `None` when they already have `max` open.
    pub fn admit(
        self: &Arc<Self>,
        user: UserId,
        kind: SocketKind,
        max: usize,
    ) -> Option<SocketTicket> {
        let mut count = self.per_user.entry(user).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        drop(count);
        self.open[kind as usize].fetch_add(1, Ordering::Relaxed);
        Some(SocketTicket {
            hub: self.clone(),
            user,
            kind,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
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

/// One counted socket; dropping it frees the user's slot.
#[derive(Debug)]
pub struct SocketTicket {
    hub: Arc<WsHub>,
    user: UserId,
    kind: SocketKind,
    pub id: u64,
}

impl Drop for SocketTicket {
    fn drop(&mut self) {
        self.hub.open[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
        self.hub.per_user.remove_if_mut(&self.user, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_sockets_per_user_and_kind() {
        let hub = Arc::new(WsHub::default());
        let a = hub.admit(UserId(1), SocketKind::Student, 2).unwrap();
        let b = hub.admit(UserId(1), SocketKind::Student, 2).unwrap();
        assert_ne!(a.id, b.id);
        assert!(hub.admit(UserId(1), SocketKind::Student, 2).is_none());
        let other = hub.admit(UserId(2), SocketKind::Dashboard, 2).unwrap();
        assert_eq!(hub.open_sockets(SocketKind::Student), 2);
        assert_eq!(hub.open_sockets(SocketKind::Dashboard), 1);
        drop(a);
        assert!(hub.admit(UserId(1), SocketKind::Student, 2).is_some());
        drop((b, other));
        assert_eq!(hub.open_sockets(SocketKind::Student), 0);
        assert_eq!(hub.open_sockets(SocketKind::Dashboard), 0);
        assert!(hub.per_user.is_empty());
    }
}
