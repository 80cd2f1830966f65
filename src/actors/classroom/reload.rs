//! Reloading the class from the database: a reload asked while one runs runs again after it, a
//! failed one is tried again a second later, and requests may wait for one to be applied.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;

use super::{ClassroomActor, ClassroomData, Member};
use crate::actors::registry::ReloadKind;
use crate::bus::{ClassEvent, StreamPos};
use crate::domain::ids::UserId;

/// A failed reload is tried again after this long.
const RELOAD_RETRY: Duration = Duration::from_secs(1);

impl ClassroomActor {
    /// Reloads roster and progress from the database. `lost_events`: events could not be
    /// delivered to this actor (its mailbox was full, some were lost on the way), so its stream
    /// has a gap: the class's shared stream's head is read first (with Redis), and once reloaded
    /// the dashboards start again from it, or from a new epoch of this actor's own (see
    /// `restart_stream`). A reload asked while one runs runs after it (the
    /// running one may have read the database before the change); a failed one is tried again a
    /// second later, until it succeeds or the class is deleted.
    pub(super) fn reload(&mut self, ctx: &mut Context<Self>, lost_events: bool) {
        if self.reloading {
            self.reload_after_this_one(lost_events);
            return;
        }
        self.reloading = true;
        self.applied_now.append(&mut self.applied_next);
        let store = self.store.clone();
        let id = self.id;
        let limit = self.load_timeout;
        let head: BoxFuture<'static, Option<StreamPos>> = match self.registry.upgrade() {
            Some(registry) if lost_events => registry.stream_head(id),
            _ => Box::pin(std::future::ready(None)),
        };
        ctx.spawn(
            async move {
                let head = head.await;
                (head, ClassroomData::load_within(&store, id, limit).await)
            }
            .into_actor(self)
            .map(move |(head, result), act, ctx| {
                act.reloading = false;
                if !matches!(result, Ok(Some(_))) {
                    act.during_reload.clear();
                }
                match result {
                    Ok(Some(data)) => {
                        let (joined, left) = act.replace_data(data);
                        for event in std::mem::take(&mut act.during_reload) {
                            act.fold(&event);
                        }
                        if lost_events {
                            act.restart_stream(head);
                        }
                        act.announce_roster_changes(joined, left);
                        for tx in act.applied_now.drain(..) {
                            let _ = tx.send(());
                        }
                    }
                    Ok(None) => {
                        // The class was deleted.
                        if let Some(registry) = act.registry.upgrade() {
                            registry.forget_classroom(act.id, &ctx.address());
                        }
                        ctx.stop();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "reloading a classroom failed; trying again in a second"
                        );
                        if let Some(registry) = act.registry.upgrade() {
                            registry.count_reload_failure(ReloadKind::Classroom);
                        }
                        // Its waiters wait for the next one.
                        act.applied_next.append(&mut act.applied_now);
                        ctx.run_later(RELOAD_RETRY, move |act, ctx| act.reload(ctx, lost_events));
                        return;
                    }
                }
                if let Some(lost_events) = act.reload_again.take() {
                    act.reload(ctx, lost_events);
                }
            }),
        );
    }

    /// Another reload runs after the one in flight (which may have read the database before the
    /// change that asks for it).
    pub(super) fn reload_after_this_one(&mut self, lost_events: bool) {
        if self.reload_again.is_none()
            && let Some(registry) = self.registry.upgrade()
        {
            registry.count_reload_queued();
        }
        self.reload_again = Some(self.reload_again.unwrap_or(false) || lost_events);
    }

    /// Roster changes found by a reload go through the bus like any event: the dashboards here
    /// get them as deltas, and other instances' actors fold them.
    pub(super) fn announce_roster_changes(&self, joined: Vec<Member>, left: Vec<UserId>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        for m in joined {
            let event = ClassEvent::StudentJoined {
                student_id: m.student_id,
                pseudonym: m.pseudonym,
                joined_at: m.joined_at,
                xp: m.xp,
            };
            registry.publish(self.id, Arc::new(event));
        }
        for student_id in left {
            registry.publish(self.id, Arc::new(ClassEvent::StudentLeft { student_id }));
        }
    }
}
