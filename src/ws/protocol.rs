//! The wire protocol of the live sockets (docs/protocol.md is its description): JSON text frames,
//! one message each, `{"type": …}` tagged, versioned by `PROTOCOL_VERSION`, and the one table of
//! close codes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actors::classroom::ClassroomSnapshot;
use crate::actors::student::SubmitAnswer;
use crate::domain::ids::{ClassroomId, ExerciseId, HintId, UserId};
use crate::domain::progress::{Achievement, Badge};

/// Sent in `welcome`. A change that an existing client would misread bumps it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Why the server closes a socket. The only place the numbers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// 1000: the client closed, or the server answered a close.
    Normal,
    /// 1001: the server is stopping (or the class's stream went away): reconnect.
    GoingAway,
    /// 1009: a message over `ws.max_frame_bytes`.
    TooBig,
    /// 1011: the server could not serve the socket (an internal error, or too busy to start it).
    InternalError,
    /// 4000: not a JSON object with a string `type`, fields that do not fit the type, or binary.
    BadMessage,
    /// 4001: a `type` this socket's role does not know.
    UnknownType,
    /// 4002: more messages than `ws.messages_per_sec` / `ws.message_burst` allow.
    RateLimited,
    /// 4003: nothing received (not even a pong) for `ws.client_timeout_secs`.
    HeartbeatTimeout,
    /// 4008: the socket did not take its messages fast enough (queue full, writes blocked).
    SlowConsumer,
    /// 4009: the user already has `ws.max_sockets_per_user` sockets open.
    TooManySockets,
    /// 4010: the session the socket was opened with ended (logout, a new sign-in, a password
    /// change, a recovery code reset, the account closed): sign in again, do not reconnect.
    SessionEnded,
}

impl Close {
    pub const ALL: [Close; 11] = [
        Close::Normal,
        Close::GoingAway,
        Close::TooBig,
        Close::InternalError,
        Close::BadMessage,
        Close::UnknownType,
        Close::RateLimited,
        Close::HeartbeatTimeout,
        Close::SlowConsumer,
        Close::TooManySockets,
        Close::SessionEnded,
    ];

    pub fn code(self) -> u16 {
        match self {
            Close::Normal => 1000,
            Close::GoingAway => 1001,
            Close::TooBig => 1009,
            Close::InternalError => 1011,
            Close::BadMessage => 4000,
            Close::UnknownType => 4001,
            Close::RateLimited => 4002,
            Close::HeartbeatTimeout => 4003,
            Close::SlowConsumer => 4008,
            Close::TooManySockets => 4009,
            Close::SessionEnded => 4010,
        }
    }

    pub fn from_code(code: u16) -> Option<Close> {
        Close::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The close frame's reason (at most 123 bytes), in French: a browser may show it.
    pub fn reason(self) -> &'static str {
        match self {
            Close::Normal => "Fermeture normale.",
            Close::GoingAway => "Le serveur redémarre ; reconnexion automatique.",
            Close::TooBig => "Message trop volumineux.",
            Close::InternalError => "Erreur interne du serveur.",
            Close::BadMessage => "Message illisible.",
            Close::UnknownType => "Type de message inconnu.",
            Close::RateLimited => "Trop de messages envoyés.",
            Close::HeartbeatTimeout => "Connexion inactive.",
            Close::SlowConsumer => "Connexion trop lente.",
            Close::TooManySockets => "Trop de connexions ouvertes pour ce compte.",
            Close::SessionEnded => "Session terminée : reconnectez-vous.",
        }
    }

    pub fn frame(self) -> actix_ws::CloseReason {
        actix_ws::CloseReason {
            code: actix_ws::CloseCode::Other(self.code()),
            description: Some(self.reason().to_owned()),
        }
    }
}

/// What a student's socket may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StudentRequest {
    /// The same fields, checks and answer as `POST /api/v1/exercises/{id}/attempts`.
    Submit {
        exercise_id: ExerciseId,
        #[serde(default)]
        attempt_id: Option<String>,
        #[serde(default)]
        duration_ms: Option<i64>,
        /// The student's answer, by the exercise's type (docs/protocol.md).
        #[serde(default)]
        answer: Option<serde_json::Value>,
        /// Read only to refuse them (`verdict_not_accepted`): the server grades.
        #[serde(default)]
        passed: Option<serde_json::Value>,
        #[serde(default)]
        score: Option<serde_json::Value>,
    },
    /// The exercise the tab shows (`null`: none).
    Focus {
        #[serde(default)]
        exercise_id: Option<ExerciseId>,
    },
    /// The browser started the exercise's tests (the next stored attempt ends it).
    RunningTests {
        exercise_id: ExerciseId,
    },
    HintReveal {
        hint_id: HintId,
    },
    GetProgress,
    Ping,
}

impl StudentRequest {
    pub const TYPES: [&'static str; 6] = [
        "submit",
        "focus",
        "running_tests",
        "hint_reveal",
        "get_progress",
        "ping",
    ];
}

/// What a teacher's dashboard socket may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TeacherRequest {
    /// A fresh snapshot, now (the deltas already queued may repeat it: skip offsets ≤ its own).
    GetSnapshot,
    Ping,
}

impl TeacherRequest {
    pub const TYPES: [&'static str; 2] = ["get_snapshot", "ping"];
}

/// Reads one text frame as a request of the role whose types are `known`.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str, known: &[&str]) -> Result<T, Close> {
    let value: Value = serde_json::from_str(text).map_err(|_| Close::BadMessage)?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or(Close::BadMessage)?;
    if !known.contains(&kind) {
        return Err(Close::UnknownType);
    }
    serde_json::from_value(value).map_err(|_| Close::BadMessage)
}

/// Why a dashboard is sent a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    /// First connection (no resume asked).
    Connect,
    /// A resume was asked for and the missed events have left the ring (or the stream restarted).
    ResumeUnavailable,
    /// The socket's queue overflowed (its backlog was dropped), or the class lost events on the
    /// way to its actor and started a new stream.
    Lagged,
    /// The client asked (`get_snapshot`).
    Requested,
}

/// What the server sends. Borrowed: built just to be serialised.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// First message on every socket.
    Welcome {
        protocol_version: u32,
        role: &'static str,
        user_id: UserId,
        #[serde(skip_serializing_if = "Option::is_none")]
        classroom_id: Option<ClassroomId>,
        heartbeat_interval_secs: u64,
        max_frame_bytes: usize,
    },
    Pong,
    /// A request was refused; the socket stays open.
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint_id: Option<HintId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// A stored attempt: the HTTP submit's answer.
    Result(&'a SubmitAnswer),
    BadgeAwarded {
        attempt_id: &'a str,
        badge: &'a str,
        title: &'a str,
    },
    AchievementUnlocked {
        attempt_id: &'a str,
        achievement: &'a str,
        title: &'a str,
        xp_bonus: i64,
    },
    LevelUp {
        attempt_id: &'a str,
        level: i64,
        total_xp: i64,
    },
    /// `GET /api/v1/me/progress`'s body.
    Progress(&'a Value),
    /// `POST /api/v1/hints/{id}/reveal`'s body.
    HintRevealed(&'a Value),
    /// The class at one offset; deltas follow with larger offsets.
    Snapshot {
        reason: SnapshotReason,
        #[serde(flatten)]
        snapshot: &'a ClassroomSnapshot,
    },
    /// The resume worked: exactly `count` deltas follow (offsets after `after_offset`).
    Resumed {
        epoch: u64,
        after_offset: u64,
        count: usize,
    },
    // `delta` frames are serialised by the class's actor, once per event for all its dashboards
    // (`actors::classroom::Delta::frame`).
}

impl ServerMessage<'_> {
    pub fn encode(&self) -> Option<Arc<str>> {
        match serde_json::to_string(self) {
            Ok(s) => Some(Arc::from(s)),
            Err(e) => {
                tracing::error!(error = %e, "serialising a socket message failed");
                None
            }
        }
    }
}

/// What a stored attempt tells its student: the answer, then each badge, achievement and level.
pub fn answer_messages(answer: &SubmitAnswer) -> Vec<ServerMessage<'_>> {
    let attempt_id = answer.attempt_id.as_str();
    let mut out = vec![ServerMessage::Result(answer)];
    out.extend(
        answer
            .new_badges
            .iter()
            .map(|code| ServerMessage::BadgeAwarded {
                attempt_id,
                badge: code,
                title: Badge::from_code(code).map_or("", Badge::title),
            }),
    );
    out.extend(answer.new_achievements.iter().map(|code| {
        let achievement = Achievement::from_code(code);
        ServerMessage::AchievementUnlocked {
            attempt_id,
            achievement: code,
            title: achievement.map_or("", Achievement::title),
            xp_bonus: achievement.map_or(0, Achievement::xp_bonus),
        }
    }));
    if answer.level_up {
        out.push(ServerMessage::LevelUp {
            attempt_id,
            level: answer.level,
            total_xp: answer.total_xp,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AttemptId;
    use serde_json::json;

    fn student(text: &str) -> Result<StudentRequest, Close> {
        parse(text, &StudentRequest::TYPES)
    }

    #[test]
    fn student_requests_parse() {
        assert_eq!(
            student(
                r#"{"type":"submit","exercise_id":7,"attempt_id":"a","answer":{"choices":["c1"]}}"#
            ),
            Ok(StudentRequest::Submit {
                exercise_id: ExerciseId(7),
                attempt_id: Some("a".into()),
                duration_ms: None,
                answer: Some(json!({"choices": ["c1"]})),
                passed: None,
                score: None,
            })
        );
        assert_eq!(
            student(r#"{"type":"focus","exercise_id":3}"#),
            Ok(StudentRequest::Focus {
                exercise_id: Some(ExerciseId(3))
            })
        );
        assert_eq!(
            student(r#"{"type":"focus","exercise_id":null}"#),
            Ok(StudentRequest::Focus { exercise_id: None })
        );
        assert_eq!(
            student(r#"{"type":"running_tests","exercise_id":3}"#),
            Ok(StudentRequest::RunningTests {
                exercise_id: ExerciseId(3)
            })
        );
        assert_eq!(
            student(r#"{"type":"hint_reveal","hint_id":9}"#),
            Ok(StudentRequest::HintReveal { hint_id: HintId(9) })
        );
        assert_eq!(student(r#"{"type":"ping"}"#), Ok(StudentRequest::Ping));
        // Unknown fields are ignored: a newer client still talks to this server.
        assert_eq!(
            student(r#"{"type":"ping","sent_at":12}"#),
            Ok(StudentRequest::Ping)
        );
        assert_eq!(
            student(r#"{"type":"get_progress"}"#),
            Ok(StudentRequest::GetProgress)
        );
    }

    #[test]
    fn bad_and_unknown_messages_have_their_close_codes() {
        for bad in [
            "not json",
            "[1,2]",
            r#"{"kind":"ping"}"#,
            r#"{"type":3}"#,
            r#"{"type":"submit","exercise_id":"seven","passed":true,"score":1}"#,
            r#"{"type":"submit","answer":{"query":"SELECT 1"}}"#,
            r#"{"type":"focus","exercise_id":-"#,
        ] {
            assert_eq!(student(bad), Err(Close::BadMessage), "{bad}");
        }
        assert_eq!(student(r#"{"type":"dance"}"#), Err(Close::UnknownType));
        // A teacher's type on a student socket, and the other way round.
        assert_eq!(
            student(r#"{"type":"get_snapshot"}"#),
            Err(Close::UnknownType)
        );
        assert_eq!(
            parse::<TeacherRequest>(r#"{"type":"submit"}"#, &TeacherRequest::TYPES),
            Err(Close::UnknownType)
        );
        assert_eq!(
            parse::<TeacherRequest>(r#"{"type":"get_snapshot"}"#, &TeacherRequest::TYPES),
            Ok(TeacherRequest::GetSnapshot)
        );
    }

    /// The variant names serde knows for an internally tagged enum, read from its refusal of an
    /// unknown tag ("unknown variant `x`, expected one of `a`, `b`").
    fn serde_variants<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let err = serde_json::from_str::<T>(r#"{"type":"no such type"}"#).unwrap_err();
        let text = err.to_string();
        let expected = text
            .split_once("expected one of ")
            .or_else(|| text.split_once("expected "))
            .unwrap_or_else(|| panic!("no variant list in {text:?}"))
            .1;
        let mut names: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    fn sorted(types: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_known_types_are_exactly_the_enums_variants() {
        // TYPES and the enums must not drift apart: a known type with no variant would close
        // well-formed messages as bad, a variant missing from TYPES would close them as unknown.
        assert_eq!(
            sorted(&StudentRequest::TYPES),
            serde_variants::<StudentRequest>()
        );
        assert_eq!(
            sorted(&TeacherRequest::TYPES),
            serde_variants::<TeacherRequest>()
        );
    }

    #[test]
    fn close_codes_are_unique_and_documented_ranges() {
        let mut codes: Vec<u16> = Close::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Close::ALL.len());
        for c in Close::ALL {
            assert_eq!(Close::from_code(c.code()), Some(c));
            // Standard codes or the application range; never 1005/1006 (not sendable).
            assert!(c.code() < 1015 || (4000..5000).contains(&c.code()), "{c:?}");
            assert!(![1004, 1005, 1006].contains(&c.code()));
            assert!(c.reason().len() <= 123, "{c:?}");
        }
        assert_eq!(Close::BadMessage.code(), 4000);
        assert_eq!(Close::TooBig.code(), 1009);
        assert_eq!(Close::SlowConsumer.code(), 4008);
        assert_eq!(Close::from_code(4999), None);
    }

    #[test]
    fn server_messages_serialise_flat() {
        let welcome = ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            role: "student",
            user_id: UserId(4),
            classroom_id: None,
            heartbeat_interval_secs: 15,
            max_frame_bytes: 65536,
        };
        let v: Value = serde_json::from_str(&welcome.encode().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "welcome", "protocol_version": 1, "role": "student", "user_id": 4,
                   "heartbeat_interval_secs": 15, "max_frame_bytes": 65536})
        );
        assert_eq!(
            ServerMessage::Pong.encode().as_deref(),
            Some(r#"{"type":"pong"}"#)
        );
    }

    #[test]
    fn an_answer_becomes_result_then_badges_achievements_and_level() {
        let answer = SubmitAnswer {
            success: true,
            attempt_id: AttemptId::parse("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap(),
            exercise_id: ExerciseId(1),
            passed: true,
            score: 100,
            first_pass: true,
            xp_awarded: 135,
            total_xp: 135,
            level: 2,
            level_up: true,
            new_badges: vec!["BEGINNER".into(), "EXPLORER".into()],
            new_achievements: vec!["FIRST_EXERCISE".into()],
            checked_by: crate::domain::verdict::CheckedBy::Server,
            feedback: Some("Bonne réponse !".into()),
        };
        let types: Vec<Value> = answer_messages(&answer)
            .iter()
            .map(|m| serde_json::from_str::<Value>(&m.encode().unwrap()).unwrap())
            .collect();
        let kinds: Vec<&str> = types.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "result",
                "badge_awarded",
                "badge_awarded",
                "achievement_unlocked",
                "level_up"
            ]
        );
        assert_eq!(
            types[0]["attempt_id"],
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        assert_eq!(types[0]["total_xp"], 135);
        assert_eq!(types[2]["title"], "Explorateur");
        assert_eq!(types[3]["achievement"], "FIRST_EXERCISE");
        assert_eq!(types[3]["xp_bonus"], 50);
        assert_eq!(types[4]["level"], 2);
    }
}
