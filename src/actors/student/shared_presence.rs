//! Presence across instances (with Redis): each instance records, per student, that it holds
//! sockets of theirs (`StudentLink::mark_online`, refreshed every `REFRESH` while they are open,
//! expiring after `TTL` so a crashed instance stops counting). When the last socket here closes,
//! the classes are told "offline" only once no other instance holds one: until then the check is
//! repeated every `RECHECK` (the actor stays meanwhile). Redis failing: this instance's view.

use std::time::Duration;

use actix::prelude::*;

use super::StudentActor;

const TTL: Duration = Duration::from_secs(15);
const REFRESH: Duration = Duration::from_secs(5);
const RECHECK: Duration = Duration::from_secs(1);

impl StudentActor {
    /// Starts the refresh of this instance's record while sockets are open (with Redis only).
    pub(super) fn start_shared_presence(&mut self, ctx: &mut Context<Self>) {
        let has_link = self
            .registry
            .upgrade()
            .is_some_and(|r| r.student_link().is_some());
        if has_link {
            ctx.run_interval(REFRESH, |act, ctx| {
                if !act.sockets.is_empty() {
                    act.mark_online(true, ctx);
                }
            });
        }
    }

    fn mark_online(&mut self, online: bool, ctx: &mut Context<Self>) {
        let Some(link) = self
            .registry
            .upgrade()
            .and_then(|r| r.student_link().cloned())
        else {
            return;
        };
        let id = self.id.0;
        ctx.spawn(
            async move {
                if let Err(e) = link.mark_online(id, online, TTL).await {
                    tracing::debug!(error = %e, "presence record not written");
                }
            }
            .into_actor(self),
        );
    }

    /// The local presence went online or offline. Returns whether telling the classes waits
    /// (offline here, and maybe online elsewhere).
    pub(super) fn shared_presence_changed(
        &mut self,
        online: bool,
        ctx: &mut Context<Self>,
    ) -> bool {
        let has_link = self
            .registry
            .upgrade()
            .is_some_and(|r| r.student_link().is_some());
        if !has_link {
            return false;
        }
        self.mark_online(online, ctx);
        if online {
            self.offline_pending = false;
            return false;
        }
        self.offline_pending = true;
        self.check_offline(ctx);
        true
    }

    fn check_offline(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self
            .registry
            .upgrade()
            .and_then(|r| r.student_link().cloned())
        else {
            self.offline_pending = false;
            self.flush_presence(ctx);
            return;
        };
        let id = self.id.0;
        ctx.spawn(
            async move { link.online_elsewhere(id).await }
                .into_actor(self)
                .map(|elsewhere, act, ctx| {
                    if !act.offline_pending || act.presence.online {
                        // Back online here meanwhile: nothing to tell.
                        act.offline_pending = false;
                        return;
                    }
                    match elsewhere {
                        Ok(true) => {
                            ctx.run_later(RECHECK, |act, ctx| {
                                if act.offline_pending {
                                    act.check_offline(ctx);
                                }
                            });
                        }
                        // Nowhere else, or Redis cannot say: this instance's view.
                        Ok(false) | Err(_) => {
                            act.offline_pending = false;
                            act.flush_presence(ctx);
                        }
                    }
                }),
        );
    }
}
