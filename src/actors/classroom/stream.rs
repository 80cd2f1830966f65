//! The class's event stream: every folded event gets an increasing offset in a bounded ring, in
//! one epoch; each is serialised once and offered to every subscriber's bounded queue without
//! waiting.
//!
//! Two kinds of epochs. With Redis (subscribed), the class's shared stream's: every event comes
//! with its (epoch, offset), the same on every instance, and the ring holds a run of them without
//! a hole; a jump in offsets (events lost on the way) empties the ring and reloads the class, and
//! a resume from before the ring is read from the shared stream (`Subscription::Behind`).
//! Without (`LocalBus`, or events delivered directly while the subscription is down), an epoch of
//! this actor's own, numbered here; a stream with a gap then starts a new epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

use super::ClassroomActor;
use crate::bus::{ClassEvent, StreamPos};

/// An event with its place in the class's stream.
#[derive(Debug, Clone, Serialize)]
pub struct Delta {
    pub offset: u64,
    #[serde(flatten)]
    pub event: Arc<ClassEvent>,
}

/// The dashboards' `delta` message (docs/protocol.md): built here, below the socket layer, so
/// that the actor serialises each event once and hands the same bytes to every dashboard.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Delta {
        epoch: u64,
        offset: u64,
        #[serde(flatten)]
        event: &'a ClassEvent,
    },
}

impl Delta {
    /// This event as a dashboard receives it, in stream `epoch`.
    pub fn frame(&self, epoch: u64) -> Option<Arc<str>> {
        let frame = Frame::Delta {
            epoch,
            offset: self.offset,
            event: &self.event,
        };
        match serde_json::to_string(&frame) {
            Ok(s) => Some(Arc::from(s)),
            Err(e) => {
                tracing::error!(error = %e, "serialising a class event failed");
                None
            }
        }
    }
}

/// A dashboard's socket as the class sees it: a bounded queue of serialised `delta` messages and
/// the flag raised when that queue was full.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: u64,
    pub tx: mpsc::Sender<Arc<str>>,
    pub lagging: Arc<AtomicBool>,
}

impl ClassroomActor {
    /// Puts a folded event in the stream. `true`: events before it were missed, or it belongs to
    /// another shared epoch than the one followed: the class must reload (`lost_events`).
    pub(super) fn place(&mut self, event: Arc<ClassEvent>, pos: Option<StreamPos>) -> bool {
        match pos {
            None => {
                if self.shared {
                    // Delivered without Redis: numbered here, in an epoch of our own.
                    self.new_local_epoch();
                    self.wake_subscribers();
                }
                self.push(event);
                false
            }
            Some(pos) if self.shared && pos.epoch == self.epoch => {
                if pos.offset < self.next_offset {
                    // Already in the stream here (or in the state loaded): folded again only.
                    return false;
                }
                let gap = pos.offset > self.next_offset;
                if gap {
                    // The ring keeps a run without a hole: it starts again here.
                    self.ring.clear();
                    self.next_offset = pos.offset;
                }
                self.push(event);
                gap
            }
            Some(pos) => {
                // Another stream (the class's shared stream began a new epoch, or this actor
                // followed one of its own): follow it from here; the dashboards start again.
                self.follow(pos.epoch, pos.offset);
                self.wake_subscribers();
                self.push(event);
                true
            }
        }
    }

    /// Follows shared epoch `epoch` from offset `next` on, with an empty ring.
    fn follow(&mut self, epoch: u64, next: u64) {
        self.epoch = epoch;
        self.shared = true;
        self.ring.clear();
        self.next_offset = next;
    }

    fn new_local_epoch(&mut self) {
        self.epoch = (crate::domain::time::now_ms() as u64).max(self.epoch + 1);
        self.shared = false;
        self.ring.clear();
    }

    /// Each live dashboard is flagged lagging and woken with an empty frame (never sent on), so
    /// that it asks for a fresh snapshot.
    fn wake_subscribers(&mut self) {
        for s in self.subscribers.values() {
            s.lagging.store(true, Ordering::Release);
            let _ = s.tx.try_send(Arc::from(""));
        }
    }

    pub(super) fn push(&mut self, event: Arc<ClassEvent>) {
        if self.ring.len() >= self.ring_capacity {
            self.ring.pop_front();
        }
        let delta = Delta {
            offset: self.next_offset,
            event,
        };
        self.next_offset += 1;
        self.fan_out(&delta);
        self.ring.push_back(delta);
    }

    /// Offers the delta, serialised once, to every subscriber that keeps up. Never waits.
    pub(super) fn fan_out(&mut self, delta: &Delta) {
        if self.subscribers.is_empty() {
            return;
        }
        let Some(frame) = delta.frame(self.epoch) else {
            return;
        };
        self.subscribers.retain(|_, s| {
            if s.tx.is_closed() {
                // Its socket ended (and its `Unsubscribe` may have been lost).
                return false;
            }
            if s.lagging.load(Ordering::Acquire) {
                return true;
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Its backlog is dropped and it starts again from a snapshot (`Resync`).
                    s.lagging.store(true, Ordering::Release);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// After a reload that followed lost events: every live dashboard takes a fresh snapshot.
    /// `head`: the class's shared stream read before the reload's database read (so the state
    /// includes every event up to its offset): the class follows it, from its offset on unless
    /// it is ahead already. Without one, a stream of this actor's own with a gap must not be
    /// resumed across it: a new epoch turns every resume from the old one into a snapshot.
    pub(super) fn restart_stream(&mut self, head: Option<StreamPos>) {
        match head {
            Some(head) if self.shared && head.epoch == self.epoch => {
                if head.offset >= self.next_offset {
                    self.ring.clear();
                    self.next_offset = head.offset + 1;
                }
            }
            Some(head) => self.follow(head.epoch, head.offset + 1),
            None => self.new_local_epoch(),
        }
        self.wake_subscribers();
    }

    /// A resume from shared epoch `epoch` after `offset` that the ring cannot answer but the
    /// shared stream may: the last offset to read there (the one before the ring's first), when
    /// the missed events are no more than the stream keeps (`actors.classroom_ring_size`).
    pub(super) fn behind(&self, epoch: u64, offset: u64) -> Option<u64> {
        let last = self.next_offset.checked_sub(1)?;
        let oldest = self
            .ring
            .front()
            .map(|d| d.offset)
            .unwrap_or(self.next_offset);
        let fits = last - offset.min(last) <= self.ring_capacity as u64;
        let before_ring = offset.saturating_add(1) < oldest;
        (self.shared && epoch == self.epoch && before_ring && fits).then(|| oldest - 1)
    }

    /// The events after `offset` of stream `epoch`, if the ring still has all of them.
    pub(super) fn events_since(&self, epoch: u64, offset: u64) -> Option<Vec<Delta>> {
        let oldest = self
            .ring
            .front()
            .map(|d| d.offset)
            .unwrap_or(self.next_offset);
        if epoch != self.epoch || offset >= self.next_offset {
            // Another incarnation's offsets (a restart), or not ours at all.
            None
        } else if offset + 1 < oldest {
            // Some missed events have left the ring.
            None
        } else {
            Some(
                self.ring
                    .iter()
                    .filter(|d| d.offset > offset)
                    .cloned()
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Presence;
    use crate::domain::ids::{ExerciseId, UserId};
    use serde_json::{Value, json};

    #[test]
    fn deltas_serialise_flat() {
        let delta = Delta {
            offset: 12,
            event: Arc::new(ClassEvent::XpChanged {
                student_id: UserId(4),
                xp: 90,
            }),
        };
        let v: Value = serde_json::from_str(&delta.frame(77).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "delta", "epoch": 77, "offset": 12, "kind": "xp_changed",
                   "student_id": 4, "xp": 90})
        );
        let presence = ClassEvent::PresenceChanged {
            student_id: UserId(4),
            presence: Presence {
                online: true,
                exercise_id: Some(ExerciseId(3)),
                running_tests: false,
                since: Some(5),
            },
            at: 6,
        };
        let delta = Delta {
            offset: 13,
            event: Arc::new(presence),
        };
        let v: Value = serde_json::from_str(&delta.frame(77).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "delta", "epoch": 77, "offset": 13, "kind": "presence_changed",
                   "student_id": 4, "online": true, "exercise_id": 3, "running_tests": false,
                   "since": 5, "at": 6})
        );
    }
}
