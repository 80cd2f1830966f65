//! The subscriber task: one dedicated pub/sub connection per instance. It listens to the sessions
//! channel, and to each class's channel while a local actor for it runs (asked by
//! `EventBus::watch_class` before the actor loads, and checked against the registry every second);
//! a channel no longer needed is left `redis.unsubscribe_after_secs` later. A lost connection is
//! opened again after an exponential backoff with jitter (100 ms doubling up to
//! `redis.reconnect_max_ms`); once every channel is subscribed again, every local class resyncs
//! and the session cache is emptied (what was published meanwhile was missed).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, watch};

use super::envelope::Envelope;
use super::order::{Order, Verdict};
use super::{Channel, Shared, Watch, sleep_or_stop};
use crate::bus::{ClassEvent, SessionEnded, StreamPos};
use crate::domain::ids::ClassroomId;

/// How often the subscribed classes are checked against the classes running here.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// The first reconnection delay (doubled at each failure, up to `redis.reconnect_max_ms`).
const BACKOFF_START: Duration = Duration::from_millis(100);

/// Why a connection's life ended.
enum Ended {
    Stop,
    Lost(String),
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut watches: mpsc::Receiver<Watch>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    let mut connected_before = false;
    loop {
        let mut order = Order::default();
        let ended = listen(
            &shared,
            &mut watches,
            &mut stopped,
            &mut order,
            &mut failures,
            &mut connected_before,
        )
        .await;
        shared.set_up(false);
        shared.first_try.send_replace(true);
        match ended {
            Ended::Stop => return,
            Ended::Lost(reason) => {
                tracing::warn!(
                    reason,
                    "Redis subscription lost; serving this instance's clients alone until it returns"
                );
            }
        }
        failures = failures.saturating_add(1);
        let delay = backoff(failures, shared.reconnect_max);
        // Meanwhile, classes that start load without waiting for a subscription.
        let waiting = async {
            loop {
                match watches.recv().await {
                    Some(w) => drop(w.subscribed),
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            stop = sleep_or_stop(delay, &mut stopped) => if stop { return },
            _ = waiting => {}
        }
    }
}

/// `BACKOFF_START` doubled per failure, capped at `max`, then a random part of it taken off
/// (half at most) so that instances cut off together do not come back together.
fn backoff(failures: u32, max: Duration) -> Duration {
    let doubled = BACKOFF_START.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let capped = doubled.min(max);
    capped.mul_f64(1.0 - rand::random::<f64>() / 2.0)
}

/// One connection's life: connect, subscribe, listen until it is lost or the bus stops.
async fn listen(
    shared: &Shared,
    watches: &mut mpsc::Receiver<Watch>,
    stopped: &mut watch::Receiver<bool>,
    order: &mut Order,
    failures: &mut u32,
    connected_before: &mut bool,
) -> Ended {
    let timeout = shared.cluster.command_timeout();
    let connecting = shared.cluster.client().get_async_pubsub();
    let pubsub = match tokio::time::timeout(shared.cluster.connect_timeout(), connecting).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => return Ended::Lost(format!("connecting: {}", e.category())),
        Err(_) => return Ended::Lost("connecting: timed out".into()),
    };
    let (mut sink, mut stream) = pubsub.split();
    let sessions = shared.channel_name(Channel::Sessions);
    // Each subscribed class, with since when it is no longer needed here.
    let mut classes: HashMap<ClassroomId, Option<Instant>> = HashMap::new();
    let wanted = shared.sink().map(|s| s.classes()).unwrap_or_default();
    let mut names = vec![sessions.clone()];
    names.extend(
        wanted
            .iter()
            .map(|id| shared.channel_name(Channel::Class(*id))),
    );
    if let Err(e) = subscribe(&mut sink, &names, timeout).await {
        return Ended::Lost(e);
    }
    classes.extend(wanted.iter().map(|id| (*id, None)));
    shared.set_up(true);
    shared.first_try.send_replace(true);
    if *connected_before {
        shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    *connected_before = true;
    *failures = 0;
    tracing::info!(classes = classes.len(), "Redis subscription up");
    // Whatever was published while nobody here listened was missed.
    shared.resync(None);
    shared.sessions_unknown();

    let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => receive(shared, order, &sessions, &msg),
                None => return Ended::Lost("connection closed".into()),
            },
            w = watches.recv() => {
                let Some(w) = w else { return Ended::Stop };
                if let std::collections::hash_map::Entry::Vacant(slot) = classes.entry(w.classroom) {
                    let name = shared.channel_name(Channel::Class(w.classroom));
                    if let Err(e) = subscribe(&mut sink, &[name], timeout).await {
                        return Ended::Lost(e);
                    }
                    slot.insert(None);
                } else {
                    classes.insert(w.classroom, None);
                }
                let _ = w.subscribed.send(());
            }
            _ = reconcile.tick() => {
                // A connection that stopped answering (half-open) counts as lost.
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("ping: {}", e.category())),
                    Err(_) => return Ended::Lost("ping: timed out".into()),
                }
                if let Err(e) = reconcile_classes(shared, &mut sink, &mut classes, order, timeout).await {
                    return Ended::Lost(e);
                }
            }
            _ = stopped.changed() => return Ended::Stop,
        }
    }
}

/// Subscribes to the classes running here that are not subscribed yet (they may have missed
/// events: they resync), and leaves those no longer needed for `redis.unsubscribe_after_secs`.
async fn reconcile_classes(
    shared: &Shared,
    sink: &mut PubSubSink,
    classes: &mut HashMap<ClassroomId, Option<Instant>>,
    order: &mut Order,
    timeout: Duration,
) -> Result<(), String> {
    let Some(local) = shared.sink() else {
        return Ok(());
    };
    let wanted: std::collections::HashSet<ClassroomId> = local.classes().into_iter().collect();
    let missing: Vec<ClassroomId> = wanted
        .iter()
        .filter(|id| !classes.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|id| shared.channel_name(Channel::Class(*id)))
            .collect();
        subscribe(sink, &names, timeout).await?;
        for id in missing {
            classes.insert(id, None);
            shared.resync(Some(id));
        }
    }
    let now = Instant::now();
    let mut leave = Vec::new();
    for (id, unwanted_since) in classes.iter_mut() {
        if wanted.contains(id) {
            *unwanted_since = None;
        } else {
            match unwanted_since {
                None => *unwanted_since = Some(now),
                Some(since) if now.duration_since(*since) >= shared.unsubscribe_after => {
                    leave.push(*id)
                }
                Some(_) => {}
            }
        }
    }
    if !leave.is_empty() {
        let names: Vec<String> = leave
            .iter()
            .map(|id| shared.channel_name(Channel::Class(*id)))
            .collect();
        match tokio::time::timeout(timeout, sink.unsubscribe(&names)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("unsubscribing: {}", e.category())),
            Err(_) => return Err("unsubscribing: timed out".into()),
        }
        for (id, name) in leave.iter().zip(&names) {
            classes.remove(id);
            order.forget_channel(name);
        }
    }
    Ok(())
}

async fn subscribe(
    sink: &mut PubSubSink,
    names: &[String],
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, sink.subscribe(names)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("subscribing: {}", e.category())),
        Err(_) => Err("subscribing: timed out".into()),
    }
}

/// A message from Redis: checked against its origin's sequence, measured, delivered.
fn receive(shared: &Shared, order: &mut Order, sessions: &str, msg: &redis::Msg) {
    let name = msg.get_channel_name();
    let payload = msg.get_payload_bytes();
    if name == sessions {
        let Some(envelope) = decode::<SessionEnded>(payload) else {
            return;
        };
        match check(shared, order, name, &envelope) {
            Verdict::Duplicate => {}
            verdict => {
                if verdict == Verdict::Gap {
                    shared.sessions_unknown();
                }
                if !is_own_direct(shared, &envelope) {
                    shared.sessions_ended(&envelope.body);
                }
            }
        }
    } else if let Some(classroom) = shared.class_of(name) {
        let Some(envelope) = decode::<ClassEvent>(payload) else {
            return;
        };
        match check(shared, order, name, &envelope) {
            Verdict::Duplicate => {}
            verdict => {
                if verdict == Verdict::Gap {
                    shared.resync(Some(classroom));
                }
                if !is_own_direct(shared, &envelope) {
                    let pos = match (envelope.epoch, envelope.offset) {
                        (Some(epoch), Some(offset)) => Some(StreamPos { epoch, offset }),
                        _ => None,
                    };
                    shared.deliver(classroom, Arc::new(envelope.body), pos);
                }
            }
        }
    }
}

fn decode<B: serde::de::DeserializeOwned>(payload: &[u8]) -> Option<Envelope<B>> {
    match serde_json::from_slice(payload) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            tracing::warn!(error = %e, "a bus message could not be read; ignored");
            None
        }
    }
}

fn is_own_direct<B>(shared: &Shared, envelope: &Envelope<B>) -> bool {
    envelope.direct && envelope.origin == shared.cluster.instance_id()
}

/// The message's place in its origin's sequence (counted), and its lag (measured).
fn check<B>(shared: &Shared, order: &mut Order, channel: &str, envelope: &Envelope<B>) -> Verdict {
    let lag_ms = (crate::domain::time::now_ms() - envelope.at).max(0);
    shared.lag.observe(lag_ms as f64 / 1000.0);
    let verdict = order.check(channel, &envelope.origin, envelope.seq);
    let counters = &shared.counters;
    match verdict {
        Verdict::Duplicate => counters.duplicates.fetch_add(1, Ordering::Relaxed),
        Verdict::Gap => counters.gaps.fetch_add(1, Ordering::Relaxed),
        Verdict::InOrder => 0,
    };
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let max = Duration::from_secs(5);
        for failures in 1..40 {
            let d = backoff(failures, max);
            let full = BACKOFF_START
                .saturating_mul(1u32 << failures.min(16).saturating_sub(1))
                .min(max);
            assert!(d <= full && d >= full / 2, "{failures}: {d:?} vs {full:?}");
        }
        assert!(backoff(1, max) <= Duration::from_millis(100));
        assert!(backoff(30, max) >= Duration::from_millis(2500));
    }
}
