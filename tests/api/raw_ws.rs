//! Sockets fed with hand-made frames (`raw_client`): frame headers announcing more than the limit,
//! fragmented messages growing past it. The memory side of the first is measured by the
//! `ws_memory` test binary, alone in its process.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb};
use crate::raw_client::{self, BINARY, PONG, RawWs, TEXT, header};
use crate::ws::{dashboard, new_class, student};

/// The app with the test settings, and its `ws.max_frame_bytes`.
async fn spawn(backend: Backend) -> (TestApp, usize) {
    let db = TestDb::new(backend).await;
    let settings = db.settings();
    let max = settings.ws.max_frame_bytes;
    (TestApp::spawn_with(db, settings).await, max)
}

/// Opens a student socket and a dashboard (each past its first messages) on a fresh class.
async fn both_sockets(app: &TestApp) -> Vec<RawWs> {
    let (_teacher, teacher_token, class) = new_class(app).await;
    let (_student, student_token) = student(app, &class).await;
    let mut ws = RawWs::connect(&app.address, "/ws", &student_token).await;
    assert_eq!(ws.reader.json().await["type"], "welcome");
    assert_eq!(ws.reader.json().await["type"], "progress");
    let mut dash = RawWs::connect(&app.address, &dashboard(&class), &teacher_token).await;
    assert_eq!(dash.reader.json().await["type"], "welcome");
    assert_eq!(dash.reader.json().await["type"], "snapshot");
    vec![ws, dash]
}

both_backends!(
    a_header_one_byte_over_the_limit_closes_1009_before_its_payload,
    |backend| async move {
        let (app, max) = spawn(backend).await;
        let max = max as u64;
        for mut ws in both_sockets(&app).await {
            // A frame of exactly the limit is a message (here, not JSON: 4000 after the whole
            // payload) — the limit is inclusive. Checked on a fresh socket below.
            ws.send(&header(0x80 | TEXT, max + 1)).await;
            ws.send(b"only a few bytes of it").await;
            assert_eq!(ws.reader.close_code().await, 1009);
        }
        for mut ws in both_sockets(&app).await {
            let empty = json!({"type": "ping", "pad": ""}).to_string();
            let pad = "x".repeat(max as usize - empty.len());
            let at_limit = json!({"type": "ping", "pad": pad}).to_string().into_bytes();
            assert_eq!(at_limit.len() as u64, max);
            ws.send(&raw_client::text(&at_limit)).await;
            ws.reader.until("pong").await;
        }
    }
);

both_backends!(
    a_header_announcing_a_gib_closes_1009_while_the_bytes_still_come,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        for ws in both_sockets(&app).await {
            let RawWs {
                mut reader,
                mut writer,
            } = ws;
            // The client keeps sending; the server must close without waiting for the payload.
            let sender = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = writer.write_all(&header(0x80 | TEXT, 1 << 30)).await;
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..(8 * 1024 * 1024) / chunk.len() {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                writer
            });
            assert_eq!(reader.close_code().await, 1009);
            sender.abort();
        }
    }
);

both_backends!(
    fragments_adding_up_past_the_limit_close_1009,
    |backend| async move {
        let (app, max) = spawn(backend).await;
        for mut ws in both_sockets(&app).await {
            let half = vec![b' '; max / 2 + 1];
            // Not final, then a continuation: the second header makes the message too big.
            ws.send(&raw_client::frame(BINARY, &half)).await;
            ws.send(&header(0x80, half.len() as u64)).await;
            assert_eq!(ws.reader.close_code().await, 1009);
        }
    }
);

both_backends!(
    bad_frames_close_4000_with_a_close_frame,
    |backend| async move {
        let (app, _) = spawn(backend).await;
        let bad: [Vec<u8>; 3] = [
            // Not UTF-8.
            raw_client::text(&[b'{', 0xC3, 0x28, b'}']),
            // RSV1 set (no extension was negotiated).
            raw_client::frame(0x80 | 0x40 | TEXT, br#"{"type":"ping"}"#),
            // Fragments that are not UTF-8 once put together.
            [
                raw_client::frame(TEXT, &[b'"', 0xE2]),
                raw_client::frame(0x80, &[0x28, 0xA1, b'"']),
            ]
            .concat(),
        ];
        for frames in bad {
            for mut ws in both_sockets(&app).await {
                ws.send(&frames).await;
                assert_eq!(ws.reader.close_code().await, 4000, "{frames:?}");
            }
        }
    }
);

both_backends!(pongs_count_towards_the_rate_limit, |backend| async move {
    let db = TestDb::new(backend).await;
    let mut settings = db.settings();
    settings.ws.message_burst = 5;
    settings.ws.messages_per_sec = 1;
    let app = TestApp::spawn_with(db, settings).await;
    for mut ws in both_sockets(&app).await {
        let pongs: Vec<u8> = (0..20)
            .flat_map(|_| raw_client::frame(0x80 | PONG, b""))
            .collect();
        ws.send(&pongs).await;
        assert_eq!(ws.reader.close_code().await, 4002);
    }
});
