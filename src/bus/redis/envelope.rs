//! What travels on a channel: the event (or ended session) with where and when it comes from.

use serde::{Deserialize, Serialize};

/// `{"E": stream epoch, "n": offset, "o": origin, "s": seq, "t": published at (ms), "d": delivered
/// at its origin already, "e": the event}`. Short names: every event of every class carries them.
/// `E` and `n` (a class event's place in the class's shared stream) are written by Redis, in the
/// script that appends the event to the stream (`stream.rs`): the origin sends the envelope
/// without them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<B> {
    #[serde(rename = "E", default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The publishing instance (`Cluster::instance_id`).
    #[serde(rename = "o")]
    pub origin: String,
    /// 1, 2, 3… per (origin, channel).
    #[serde(rename = "s")]
    pub seq: u64,
    /// When it was published (ms since the epoch): the receiver's lag is measured from it.
    #[serde(rename = "t")]
    pub at: i64,
    /// The origin delivered it to itself already (published while its subscription was down,
    /// or an ended session, applied at once): the origin skips it when it comes back.
    #[serde(rename = "d", default)]
    pub direct: bool,
    #[serde(rename = "e")]
    pub body: B,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{ClassEvent, Presence, SessionEnded};
    use crate::domain::ids::{ExerciseId, UserId};

    #[test]
    fn envelopes_round_trip() {
        let event = ClassEvent::PresenceChanged {
            student_id: UserId(4),
            presence: Presence {
                online: true,
                exercise_id: Some(ExerciseId(3)),
                running_tests: false,
                since: Some(5),
            },
            at: 6,
        };
        let sent = Envelope {
            epoch: None,
            offset: None,
            origin: "a1".into(),
            seq: 9,
            at: 1234,
            direct: false,
            body: &event,
        };
        let text = serde_json::to_string(&sent).unwrap();
        let got: Envelope<ClassEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(got.body, event);
        assert_eq!((got.origin.as_str(), got.seq, got.at), ("a1", 9, 1234));
        let ended = SessionEnded::User { user_id: UserId(2) };
        let text = serde_json::to_string(&Envelope {
            epoch: None,
            offset: None,
            origin: "b".into(),
            seq: 1,
            at: 1,
            direct: true,
            body: &ended,
        })
        .unwrap();
        let got: Envelope<SessionEnded> = serde_json::from_str(&text).unwrap();
        assert_eq!(got.body, ended);
        assert!(got.direct);
        assert!(text.starts_with("{\"o\":"), "{text}");
        // As the stream script writes it: the position first, then the rest.
        let placed = format!("{{\"E\":17,\"n\":3,{}", &text[1..]);
        let got: Envelope<SessionEnded> = serde_json::from_str(&placed).unwrap();
        assert_eq!((got.epoch, got.offset), (Some(17), Some(3)));
    }
}
