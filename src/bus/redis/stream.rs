//! Each class's shared stream: one numbering of the class's events for every instance, and its
//! recent events kept in Redis so that a dashboard resumes on any instance.
//!
//! - `{prefix}:stream:{class}:head`, a hash: `epoch` (ms, Redis's clock, when the stream began)
//!   and `offset` (the last offset given).
//! - `{prefix}:stream:{class}`, a Redis stream: entry `{offset}-0`, field `m` = the envelope as it
//!   was published; trimmed with `MAXLEN ~ actors.classroom_ring_size` (Redis keeps at least that
//!   many).
//!
//! One Lua script does everything, atomically: `append` (the publisher sends one per class event,
//! pipelined) gives the next offset, adds the envelope with its position to the stream and
//! `PUBLISH`es it, so every subscriber receives a class's events in offset order; `head` reads
//! (or creates) the head; `restart` begins a new epoch (an event of this instance was lost before
//! reaching Redis: the stream has a hole no offset shows, so resuming across it must fail) unless
//! the stream is already another epoch than the one with the hole (Redis restarted). Both
//! keys `PEXPIRE` after `redis.class_stream_ttl_secs` without use; a missing head begins a new
//! epoch (Redis restarted, keys expired or evicted).

use std::sync::LazyLock;

use super::envelope::Envelope;
use super::{Channel, Shared};
use crate::bus::{ClassEvent, StreamPos};
use crate::domain::ids::ClassroomId;

/// KEYS[1]: the head, KEYS[2]: the stream. ARGV[1]: `append`, `head` or `restart`; ARGV[2]: the
/// keys' time to live (ms); ARGV[3]: the stream's cap; ARGV[4]: the channel; ARGV[5]: the
/// envelope without its opening brace (`append`), or the epoch with a hole (`restart`; empty:
/// whatever the epoch). Epochs are TIME in ms, always above the previous one. `append` answers
/// the epoch, `head` and `restart` the epoch and the last offset.
const SCRIPT: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local holed = ARGV[1] == 'restart' and (ARGV[5] == '' or ARGV[5] == epoch)
if (not epoch) or holed then
  local t = redis.call('TIME')
  local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  if epoch and tonumber(now) <= tonumber(epoch) then
    now = string.format('%.0f', tonumber(epoch) + 1)
  end
  epoch = now
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if ARGV[1] ~= 'append' then
  return {epoch, redis.call('HGET', KEYS[1], 'offset')}
end
local n = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local msg = '{"E":' .. epoch .. ',"n":' .. n .. ',' .. ARGV[5]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], n .. '-0', 'm', msg)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], msg)
return epoch
"#;

pub(super) static STREAM_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(SCRIPT));

impl Shared {
    fn stream_keys(&self, classroom: ClassroomId) -> (String, String) {
        let stream = self.cluster.key(&format!("stream:{}", classroom.0));
        (format!("{stream}:head"), stream)
    }

    /// The script's call (`EVALSHA`; the publisher loads the script on `NOSCRIPT`).
    fn stream_cmd(&self, classroom: ClassroomId, mode: &str, payload: &str) -> redis::Cmd {
        let (head, stream) = self.stream_keys(classroom);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(STREAM_SCRIPT.get_hash())
            .arg(2)
            .arg(head)
            .arg(stream)
            .arg(mode)
            .arg(self.stream_ttl_ms)
            .arg(self.stream_cap)
            .arg(self.channel_name(Channel::Class(classroom)))
            .arg(payload);
        cmd
    }

    /// Appends a class event (its envelope, serialised) to the class's stream and publishes it.
    pub(super) fn append_cmd(&self, classroom: ClassroomId, envelope: &str) -> redis::Cmd {
        self.stream_cmd(
            classroom,
            "append",
            envelope.strip_prefix('{').unwrap_or(envelope),
        )
    }

    /// Begins a new epoch of the class's stream if it is still `holed` (`None`: whatever it is).
    pub(super) fn restart_cmd(&self, classroom: ClassroomId, holed: Option<u64>) -> redis::Cmd {
        let holed = holed.map(|e| e.to_string()).unwrap_or_default();
        self.stream_cmd(classroom, "restart", &holed)
    }

    /// The class's head (created if missing), bounded by `redis.command_timeout_ms`.
    pub(super) async fn stream_head(&self, classroom: ClassroomId) -> Option<StreamPos> {
        let (head, stream) = self.stream_keys(classroom);
        let mut invocation = STREAM_SCRIPT.prepare_invoke();
        invocation
            .key(head)
            .key(stream)
            .arg("head")
            .arg(self.stream_ttl_ms)
            .arg(self.stream_cap)
            .arg("")
            .arg("");
        let got =
            self.cluster
                .run(|mut conn| async move {
                    invocation.invoke_async::<(String, String)>(&mut conn).await
                })
                .await;
        match got {
            Ok((epoch, offset)) => Some(StreamPos {
                epoch: epoch.parse().ok()?,
                offset: offset.parse().ok()?,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "reading a class's stream head failed");
                None
            }
        }
    }

    /// The events `after + 1 ..= upto` of the class's stream `epoch`, if it still holds them all.
    pub(super) async fn recent_events(
        &self,
        classroom: ClassroomId,
        epoch: u64,
        after: u64,
        upto: u64,
    ) -> Option<Vec<(u64, ClassEvent)>> {
        if upto <= after || upto - after > self.stream_cap as u64 {
            return None;
        }
        let (head, stream) = self.stream_keys(classroom);
        let mut pipe = redis::pipe();
        pipe.atomic().hget(&head, "epoch").xrange_count(
            &stream,
            format!("{}-0", after + 1),
            format!("{upto}-0"),
            upto - after,
        );
        let got = self
            .cluster
            .run(|mut conn| async move {
                pipe.query_async::<(Option<String>, redis::streams::StreamRangeReply)>(&mut conn)
                    .await
            })
            .await;
        let (current, range) = match got {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "reading a class's recent events failed");
                return None;
            }
        };
        if current?.parse::<u64>().ok()? != epoch {
            return None;
        }
        let mut events = Vec::with_capacity(range.ids.len());
        for (entry, expected) in range.ids.iter().zip(after + 1..) {
            let offset: u64 = entry.id.strip_suffix("-0")?.parse().ok()?;
            let payload: Vec<u8> = entry.get("m")?;
            let envelope: Envelope<ClassEvent> = serde_json::from_slice(&payload).ok()?;
            if offset != expected || envelope.epoch != Some(epoch) {
                return None;
            }
            events.push((offset, envelope.body));
        }
        // Every one of them, none trimmed or lost.
        (events.len() as u64 == upto - after).then_some(events)
    }
}
