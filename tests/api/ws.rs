//! Live WebSockets, with a real client (tokio-tungstenite) against the real app: results and
//! badges to students, deltas to teachers, presence, resume, refusals, limits, backpressure.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestClassroom, TestDb, TestUser, answer_for, unique};

/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(5);

/// How a test client proves who it is.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    /// The session cookie, as a browser sends it (with our Origin unless told otherwise).
    Cookie(&'a str),
    Bearer(&'a str),
}

pub(crate) struct Ws {
    pub(crate) stream: WebSocketStream<TcpStream>,
}

fn port(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// Opens a socket; `Err(status)` when the upgrade is refused. `recv_buffer`: a small TCP receive
/// buffer, for a client that will stop reading.
async fn connect_with(
    app: &TestApp,
    path: &str,
    cred: Cred<'_>,
    origin: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<Ws, u16> {
    let port = port(app);
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    match cred {
        Cred::None => {}
        Cred::Cookie(token) => {
            headers.insert(
                "cookie",
                HeaderValue::from_str(&format!("nsi_session={token}")).unwrap(),
            );
        }
        Cred::Bearer(token) => {
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
    }
    if let Some(origin) = origin {
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("tcp connect");
    match tokio::time::timeout(WAIT, client_async(request, tcp)).await {
        Ok(Ok((stream, _))) => Ok(Ws { stream }),
        Ok(Err(WsError::Http(response))) => Err(response.status().as_u16()),
        Ok(Err(e)) => panic!("websocket handshake to {path}: {e}"),
        Err(_) => panic!("websocket handshake to {path} timed out"),
    }
}

/// A browser on our own page.
pub(crate) async fn connect(app: &TestApp, path: &str, token: &str) -> Ws {
    connect_with(app, path, Cred::Cookie(token), Some(&app.address), None)
        .await
        .unwrap_or_else(|status| panic!("upgrade to {path} refused: {status}"))
}

impl Ws {
    pub(crate) async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// The next data message (pings and pongs skipped); panics on close or after `WAIT`.
    pub(crate) async fn next(&mut self) -> Value {
        self.try_next(WAIT)
            .await
            .unwrap_or_else(|| panic!("no message within {WAIT:?}"))
    }

    pub(crate) async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("JSON message"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next message, asserting its type.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], kind, "{v}");
        v
    }

    /// Skips messages until one satisfies `pred`.
    pub(crate) async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// The next delta of `kind` (other messages skipped).
    pub(crate) async fn delta(&mut self, kind: &str) -> Value {
        self.until(kind, |v| v["type"] == "delta" && v["kind"] == kind)
            .await
    }

    /// Asserts that no data message arrives for `wait`.
    async fn silent_for(&mut self, wait: Duration) {
        if let Some(v) = self.try_next(wait).await {
            panic!("unexpected message: {v}");
        }
    }

    /// Reads until the server closes; answers the close code.
    pub(crate) async fn close_code(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => panic!("not closed within {WAIT:?}"),
                Ok(Some(Ok(Message::Close(Some(frame))))) => return u16::from(frame.code),
                Ok(Some(Ok(Message::Close(None)))) => panic!("closed without a code"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("socket error before the close frame: {e}"),
                Ok(None) => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// Exercise slugs by id (ids come from the catalogue's order: the same in every test database).
static SLUGS: std::sync::Mutex<std::collections::BTreeMap<i64, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The id of the first `n` exercises of the catalogue.
pub(crate) async fn exercises(app: &TestApp, n: usize) -> Vec<i64> {
    let listed = app.listed_exercises().await;
    let mut slugs = SLUGS.lock().unwrap();
    for e in &listed {
        slugs.insert(e.id, e.slug.clone());
    }
    listed.into_iter().take(n).map(|e| e.id).collect()
}

/// A teacher with a bearer token (also valid as the session cookie).
pub(crate) async fn teacher(app: &TestApp) -> (TestUser, String) {
    let mut user = app.signup_teacher().await;
    let body = app
        .anonymous()
        .post_json(
            "/api/v1/auth/login",
            &json!({
                "login": user.login.clone().unwrap(),
                "password": user.password.clone().unwrap(),
                "bearer": true,
            }),
            200,
        )
        .await;
    let token = body["token"].as_str().expect("token").to_owned();
    user.token = Some(token.clone());
    (user, token)
}

/// A new student of `class`, signed in with a bearer token (also valid as the session cookie).
pub(crate) async fn student(app: &TestApp, class: &TestClassroom) -> (TestUser, String) {
    let mut user = app.anonymous();
    let body = user
        .post_json(
            "/api/v1/auth/join",
            &json!({ "join_code": class.join_code, "pseudonym": unique("élève-"), "bearer": true }),
            201,
        )
        .await;
    user.id = body["user"]["id"].as_i64().expect("id");
    user.role = "student".into();
    let token = body["token"].as_str().expect("token").to_owned();
    user.token = Some(token.clone());
    (user, token)
}

pub(crate) async fn new_class(app: &TestApp) -> (TestUser, String, TestClassroom) {
    let (teacher, token) = teacher(app).await;
    let class = app.create_classroom(&teacher).await;
    (teacher, token, class)
}

pub(crate) fn dashboard(class: &TestClassroom) -> String {
    format!("/ws/classrooms/{}", class.id)
}

/// A submit with a right (`passed`) or wrong answer for the exercise (helpers::answer_for).
pub(crate) fn submit_msg(exercise: i64, passed: bool) -> (String, Value) {
    let attempt_id = uuid::Uuid::new_v4().to_string();
    let answer = SLUGS
        .lock()
        .unwrap()
        .get(&exercise)
        .map_or(json!({ "choices": ["c0"] }), |slug| {
            answer_for(slug, passed)
        });
    let msg = json!({
        "type": "submit", "attempt_id": attempt_id, "exercise_id": exercise,
        "answer": answer, "duration_ms": 1200,
    });
    (attempt_id, msg)
}

pub(crate) async fn http_submit(user: &TestUser, exercise: i64, passed: bool) -> Value {
    let (attempt_id, mut body) = submit_msg(exercise, passed);
    let body = body.as_object_mut().unwrap();
    body.remove("type");
    body.remove("exercise_id");
    let answer = user
        .post_json(
            &format!("/api/v1/exercises/{exercise}/attempts"),
            &Value::Object(body.clone()),
            200,
        )
        .await;
    assert_eq!(answer["attempt_id"], attempt_id.as_str());
    answer
}

/// Opens a student socket and reads its welcome and progress.
pub(crate) async fn student_socket(app: &TestApp, token: &str) -> Ws {
    let mut ws = connect(app, "/ws", token).await;
    let welcome = ws.expect("welcome").await;
    assert_eq!(welcome["protocol_version"], 1);
    assert_eq!(welcome["role"], "student");
    ws.expect("progress").await;
    ws
}

/// Opens a dashboard and reads its welcome and first snapshot.
pub(crate) async fn teacher_socket(
    app: &TestApp,
    class: &TestClassroom,
    token: &str,
) -> (Ws, Value) {
    let mut ws = connect(app, &dashboard(class), token).await;
    let welcome = ws.expect("welcome").await;
    assert_eq!(welcome["role"], "teacher");
    assert_eq!(welcome["classroom_id"], class.id);
    let snapshot = ws.expect("snapshot").await;
    assert_eq!(snapshot["reason"], "connect", "{snapshot}");
    (ws, snapshot)
}

both_backends!(
    a_submit_over_the_socket_answers_the_student_and_reaches_the_teacher,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let (student_user, student_token) = student(&app, &class).await;
        let ex = exercises(&app, 1).await[0];
        let (mut dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
        assert_eq!(snapshot["students"][0]["student_id"], student_user.id);
        assert_eq!(snapshot["students"][0]["online"], false);

        let mut ws = student_socket(&app, &student_token).await;
        let online = dash.delta("presence_changed").await;
        assert_eq!(online["student_id"], student_user.id);
        assert_eq!(online["online"], true);

        let (attempt_id, msg) = submit_msg(ex, true);
        ws.send(msg).await;
        let result = ws.expect("result").await;
        assert_eq!(result["attempt_id"], attempt_id.as_str());
        assert_eq!(result["passed"], true);
        assert_eq!(result["first_pass"], true);
        let mut achievements = Vec::new();
        let mut badges = Vec::new();
        while let Some(v) = ws.try_next(Duration::from_millis(300)).await {
            assert_eq!(v["attempt_id"], attempt_id.as_str(), "{v}");
            match v["type"].as_str().unwrap() {
                "achievement_unlocked" => achievements.push(v["achievement"].clone()),
                "badge_awarded" => badges.push(v["badge"].clone()),
                "level_up" => assert_eq!(v["level"], result["level"]),
                other => panic!("unexpected {other}: {v}"),
            }
        }
        assert!(
            achievements.contains(&json!("FIRST_EXERCISE")),
            "{achievements:?}"
        );
        assert!(badges.contains(&json!("BEGINNER")), "{badges:?}");

        // The dashboard: the attempt, then its badges and achievements, offsets increasing.
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], attempt_id.as_str());
        assert_eq!(recorded["student_id"], student_user.id);
        assert_eq!(recorded["exercise_id"], ex);
        assert_eq!(recorded["passed"], true);
        assert_eq!(recorded["progress"]["passed"], true);
        assert!(recorded["offset"].as_u64().unwrap() > online["offset"].as_u64().unwrap());
        let unlocked = dash.delta("achievement_unlocked").await;
        assert!(unlocked["offset"].as_u64() > recorded["offset"].as_u64());

        // The same attempt resent (the outbox after a reconnect): the same answer, stored once.
        let (_, mut again) = submit_msg(ex, true);
        again["attempt_id"] = json!(attempt_id);
        ws.send(again).await;
        let resent = ws.expect("result").await;
        assert_eq!(resent, result);
        // And from a new socket after a reconnect (the outbox did not see the answer).
        ws.stream.close(None).await.expect("close");
        let mut reconnected = student_socket(&app, &student_token).await;
        let (_, mut again) = submit_msg(ex, true);
        again["attempt_id"] = json!(attempt_id);
        reconnected.send(again).await;
        assert_eq!(reconnected.expect("result").await, result);
        assert_eq!(
            app.db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}'"
                ))
                .await,
            1
        );
    }
);

both_backends!(
    an_http_submit_reaches_the_students_sockets_and_the_teacher,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let (student_user, student_token) = student(&app, &class).await;
        let ex = exercises(&app, 1).await[0];
        let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;
        let mut tab = student_socket(&app, &student_token).await;

        let answer = http_submit(&student_user, ex, true).await;
        let mut pushed = tab.expect("result").await;
        pushed.as_object_mut().unwrap().remove("type");
        assert_eq!(pushed, answer);
        let unlocked = tab
            .until("FIRST_EXERCISE", |v| v["type"] == "achievement_unlocked")
            .await;
        assert_eq!(unlocked["attempt_id"], answer["attempt_id"]);
        assert_eq!(unlocked["achievement"], "FIRST_EXERCISE");

        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], answer["attempt_id"]);
        assert_eq!(recorded["student_id"], student_user.id);
    }
);

#[tokio::test]
async fn a_student_in_two_classes_reaches_both_dashboards() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_t1, token1, snt) = new_class(&app).await;
    let (_t2, token2, nsi) = new_class(&app).await;
    let (student_user, _) = student(&app, &snt).await;
    let ex = exercises(&app, 2).await;
    // The student's actor runs (a read starts it) when the same account joins the second class:
    // it must learn of it.
    student_user.get_json("/api/v1/me/progress", 200).await;
    student_user
        .post_json(
            "/api/v1/auth/join",
            &json!({ "join_code": nsi.join_code, "pseudonym": "Même élève", "as_current_user": true }),
            201,
        )
        .await;
    let (mut dash1, _) = teacher_socket(&app, &snt, &token1).await;
    let (mut dash2, snapshot2) = teacher_socket(&app, &nsi, &token2).await;
    assert_eq!(snapshot2["students"][0]["student_id"], student_user.id);

    // A first attempt, failed: BEGINNER. Then a pass: FIRST_EXERCISE. Both classes see both.
    let failed = http_submit(&student_user, ex[0], false).await;
    assert_eq!(failed["new_badges"], json!(["BEGINNER"]));
    let passed = http_submit(&student_user, ex[1], true).await;
    for dash in [&mut dash1, &mut dash2] {
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], failed["attempt_id"]);
        assert_eq!(recorded["student_id"], student_user.id);
        let badge = dash.delta("badge_awarded").await;
        assert_eq!(badge["badge"], "BEGINNER");
        assert_eq!(badge["student_id"], student_user.id);
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], passed["attempt_id"]);
        let unlocked = dash.delta("achievement_unlocked").await;
        assert_eq!(unlocked["achievement"], "FIRST_EXERCISE");
    }
}

#[tokio::test]
async fn a_second_tab_gets_the_attempts_of_the_first() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, _, class) = new_class(&app).await;
    let (_student, token) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let mut first = student_socket(&app, &token).await;
    let mut second = student_socket(&app, &token).await;
    let (attempt_id, msg) = submit_msg(ex, false);
    first.send(msg).await;
    let direct = first.expect("result").await;
    let pushed = second.expect("result").await;
    assert_eq!(direct, pushed);
    assert_eq!(pushed["attempt_id"], attempt_id.as_str());
    // The sender gets its answer once (not pushed back to it).
    first.expect("badge_awarded").await;
    first.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn presence_connect_focus_and_disconnect_reach_the_teacher() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (student_user, student_token) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;

    let mut ws = student_socket(&app, &student_token).await;
    let online = dash.delta("presence_changed").await;
    assert_eq!(online["student_id"], student_user.id);
    assert_eq!(online["online"], true);
    assert_eq!(online["exercise_id"], Value::Null);

    ws.send(json!({"type": "focus", "exercise_id": ex})).await;
    let focused = dash.delta("presence_changed").await;
    assert_eq!(focused["online"], true);
    assert_eq!(focused["exercise_id"], ex);
    assert_eq!(focused["running_tests"], false);

    ws.send(json!({"type": "running_tests", "exercise_id": ex}))
        .await;
    let running = dash.delta("presence_changed").await;
    assert_eq!(running["running_tests"], true);

    // A second tab is the same presence: closing one keeps the student online.
    let mut tab = student_socket(&app, &student_token).await;
    tab.stream.close(None).await.expect("close");
    drop(tab);
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;

    // The snapshot of a new dashboard shows the student online, on the exercise.
    let (_, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    let row = &snapshot["students"][0];
    assert_eq!(row["online"], true, "{snapshot}");
    assert_eq!(row["current_exercise_id"], ex);
    assert_eq!(row["running_tests"], true);

    ws.stream.close(None).await.expect("close");
    let offline = dash.delta("presence_changed").await;
    assert_eq!(offline["student_id"], student_user.id);
    assert_eq!(offline["online"], false);
    // The second tab's coming and going changed nothing the teacher sees: no delta between.
    assert_eq!(
        offline["offset"].as_u64().unwrap(),
        running["offset"].as_u64().unwrap() + 1
    );
}

#[tokio::test]
async fn a_dashboard_opened_after_the_students_connected_sees_them_online() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (_student, student_token) = student(&app, &class).await;
    // The class's actor is not running yet when the student connects.
    let _ws = student_socket(&app, &student_token).await;
    let (_, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    assert_eq!(snapshot["students"][0]["online"], true, "{snapshot}");
}

/// Settings where only attempts make events: no stuck reports in the way.
pub(crate) fn quiet_settings(db: &TestDb) -> nsi_live::config::Settings {
    let mut s = db.settings();
    s.ws.stuck_failed_attempts = 1000;
    s
}

both_backends!(
    a_dashboard_resumes_with_exactly_the_missed_deltas,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = quiet_settings(&db);
        let app = TestApp::spawn_with(db, settings).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let (student_user, _) = student(&app, &class).await;
        let exs = exercises(&app, 6).await;
        // The first attempt earns the BEGINNER badge: before the dashboard leaves.
        http_submit(&student_user, exs[0], false).await;

        let (mut dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
        let epoch = snapshot["epoch"].as_u64().unwrap();
        let mut last = snapshot["offset"].as_u64().unwrap();
        // Whatever is still arriving: the dashboard keeps the last offset it saw.
        while let Some(v) = dash.try_next(Duration::from_millis(300)).await {
            last = v["offset"].as_u64().unwrap();
        }
        dash.stream.close(None).await.expect("close");
        drop(dash);

        let mut ids = Vec::new();
        for ex in &exs[1..6] {
            ids.push(http_submit(&student_user, *ex, false).await["attempt_id"].clone());
        }

        let path = format!("{}?epoch={epoch}&offset={last}", dashboard(&class));
        let mut dash = connect(&app, &path, &teacher_token).await;
        dash.expect("welcome").await;
        let resumed = dash.expect("resumed").await;
        assert_eq!(resumed["count"], 5, "{resumed}");
        assert_eq!(resumed["after_offset"], last);
        for (i, id) in ids.iter().enumerate() {
            let d = dash.expect("delta").await;
            assert_eq!(d["kind"], "attempt_recorded", "{d}");
            assert_eq!(d["offset"], last + 1 + i as u64);
            assert_eq!(d["epoch"], epoch);
            assert_eq!(&d["attempt_id"], id);
        }
        dash.silent_for(Duration::from_millis(300)).await;

        // Live again: the next attempt follows.
        http_submit(&student_user, exs[0], false).await;
        let d = dash.expect("delta").await;
        assert_eq!(d["offset"], last + 6);
    }
);

#[tokio::test]
async fn a_resume_from_too_far_back_gets_a_snapshot_saying_so() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = quiet_settings(&db);
    settings.actors.classroom_ring_size = 3;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (student_user, _) = student(&app, &class).await;
    let exs = exercises(&app, 5).await;

    let (dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    let epoch = snapshot["epoch"].as_u64().unwrap();
    let offset = snapshot["offset"].as_u64().unwrap();
    drop(dash);
    for ex in &exs {
        http_submit(&student_user, *ex, false).await;
    }
    let path = format!("{}?epoch={epoch}&offset={offset}", dashboard(&class));
    let mut dash = connect(&app, &path, &teacher_token).await;
    dash.expect("welcome").await;
    let snapshot = dash.expect("snapshot").await;
    assert_eq!(snapshot["reason"], "resume_unavailable", "{snapshot}");
    assert!(snapshot["offset"].as_u64().unwrap() >= offset + 5);
    assert_eq!(snapshot["grid"].as_array().unwrap().len(), 5);

    // Another stream's epoch (the class restarted): a snapshot too.
    let path = format!("{}?epoch={}&offset=1", dashboard(&class), epoch + 1);
    let mut dash = connect(&app, &path, &teacher_token).await;
    dash.expect("welcome").await;
    assert_eq!(
        dash.expect("snapshot").await["reason"],
        "resume_unavailable"
    );
}

#[tokio::test]
async fn events_lost_on_the_way_to_a_class_start_a_new_stream_and_resync_its_dashboards() {
    // One actor thread and a one-message mailbox: a first pass publishes four events (attempt,
    // BEGINNER, FIRST_EXERCISE, PERFECT_SCORE) in one turn of the student's actor, while the
    // class's actor, on the same thread, cannot take them: some are lost on the way.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.actors.arbiters = 1;
    settings.actors.mailbox_capacity = 1;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (student_user, _) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let (mut dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    let epoch = snapshot["epoch"].as_u64().unwrap();
    let offset = snapshot["offset"].as_u64().unwrap();

    let answer = http_submit(&student_user, ex, true).await;
    // The class reloads from the database and starts a new stream: the dashboard is told to
    // replace its view rather than carry on with a gap.
    let fresh = dash
        .until("a lagged snapshot", |v| v["type"] == "snapshot")
        .await;
    assert_eq!(fresh["reason"], "lagged", "{fresh}");
    assert_ne!(fresh["epoch"].as_u64().unwrap(), epoch, "{fresh}");
    let row = &fresh["grid"][0];
    assert_eq!(row["student_id"], student_user.id, "{fresh}");
    assert_eq!(row["exercise_id"], ex);
    assert_eq!(row["passed"], true);
    assert_eq!(fresh["students"][0]["xp"], answer["total_xp"], "{fresh}");

    // A dashboard resuming from before the gap gets a snapshot, never a partial replay.
    let path = format!("{}?epoch={epoch}&offset={offset}", dashboard(&class));
    let mut late = connect(&app, &path, &teacher_token).await;
    late.expect("welcome").await;
    let again = late.expect("snapshot").await;
    assert_eq!(again["reason"], "resume_unavailable", "{again}");
    assert_eq!(again["epoch"], fresh["epoch"]);
}

#[tokio::test]
async fn upgrades_are_refused_before_the_socket_opens() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (_other, other_token, _) = new_class(&app).await;
    let (_student, student_token) = student(&app, &class).await;
    let own = Some(app.address.as_str());
    let path = dashboard(&class);

    // No cookie.
    assert_eq!(
        connect_with(&app, "/ws", Cred::None, own, None).await.err(),
        Some(401)
    );
    assert_eq!(
        connect_with(&app, &path, Cred::None, own, None).await.err(),
        Some(401)
    );
    // A foreign page opening a socket with the student's cookie (cross-site hijacking).
    let evil = Some("https://evil.example");
    let refused = connect_with(&app, "/ws", Cred::Cookie(&student_token), evil, None).await;
    assert_eq!(refused.err(), Some(403));
    let refused = connect_with(&app, &path, Cred::Cookie(&teacher_token), evil, None).await;
    assert_eq!(refused.err(), Some(403));
    // A student on a dashboard; a teacher on the student socket.
    let refused = connect_with(&app, &path, Cred::Cookie(&student_token), own, None).await;
    assert_eq!(refused.err(), Some(403));
    let refused = connect_with(&app, "/ws", Cred::Cookie(&teacher_token), own, None).await;
    assert_eq!(refused.err(), Some(403));
    // Another teacher's class, and a class that does not exist: not found alike.
    let refused = connect_with(&app, &path, Cred::Cookie(&other_token), own, None).await;
    assert_eq!(refused.err(), Some(404));
    let refused = connect_with(
        &app,
        "/ws/classrooms/999999",
        Cred::Cookie(&teacher_token),
        own,
        None,
    )
    .await;
    assert_eq!(refused.err(), Some(404));
    // A protocol version we do not speak.
    let refused = connect_with(&app, "/ws?v=2", Cred::Cookie(&student_token), own, None).await;
    assert_eq!(refused.err(), Some(400));
    // A bearer client (no browser) may connect without an Origin; ours is accepted.
    let mut ws = connect_with(&app, "/ws?v=1", Cred::Bearer(&student_token), None, None)
        .await
        .expect("bearer upgrade");
    ws.expect("welcome").await;
}

#[tokio::test]
async fn bad_messages_close_with_their_codes_and_the_server_goes_on() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (_student, token) = student(&app, &class).await;

    let mut ws = student_socket(&app, &token).await;
    ws.stream
        .send(Message::text("{not json"))
        .await
        .expect("send");
    assert_eq!(ws.close_code().await, 4000);

    let mut ws = student_socket(&app, &token).await;
    ws.send(json!({"type": "dance"})).await;
    assert_eq!(ws.close_code().await, 4001);

    // A teacher's message on a student socket is unknown there too.
    let mut ws = student_socket(&app, &token).await;
    ws.send(json!({"type": "get_snapshot"})).await;
    assert_eq!(ws.close_code().await, 4001);

    let mut ws = student_socket(&app, &token).await;
    ws.stream
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(ws.close_code().await, 4000);

    // 1 MiB in one frame: closed as too big, without reading it all.
    let ws = student_socket(&app, &token).await;
    let big = json!({"type": "ping", "pad": "x".repeat(1 << 20)}).to_string();
    let (mut sink, mut stream) = ws.stream.split();
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::text(big)).await;
        sink
    });
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, 1009);
    sender.abort();

    let mut dash = connect(&app, &dashboard(&class), &teacher_token).await;
    dash.expect("welcome").await;
    dash.expect("snapshot").await;
    dash.send(json!({"type": "submit"})).await;
    assert_eq!(dash.close_code().await, 4001);

    // The server is unharmed: a new socket works, over HTTP too.
    let mut ws = student_socket(&app, &token).await;
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
    app.get_json("/api/v1/courses", 200).await;
}

#[tokio::test]
async fn refusals_answer_errors_and_keep_the_socket() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, _, class) = new_class(&app).await;
    let (_student, token) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let mut ws = student_socket(&app, &token).await;
    let (attempt_id, mut msg) = submit_msg(ex, true);
    msg["score"] = json!(100);
    ws.send(msg).await;
    let error = ws.expect("error").await;
    assert_eq!(error["code"], "verdict_not_accepted");
    assert_eq!(error["attempt_id"], attempt_id.as_str());
    assert!(error["message"].as_str().unwrap().contains("score"));
    let (_, mut msg) = submit_msg(999_999, true);
    msg["exercise_id"] = json!(999_999);
    ws.send(msg).await;
    assert_eq!(ws.expect("error").await["code"], "not_found");
    ws.send(json!({"type": "focus", "exercise_id": 999_999}))
        .await;
    assert_eq!(ws.expect("error").await["code"], "not_found");
    ws.send(json!({"type": "get_progress"})).await;
    let progress = ws.expect("progress").await;
    assert_eq!(progress["xp"], 0);
}

#[tokio::test]
async fn limits_rate_and_sockets_per_user() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.ws.message_burst = 5;
    settings.ws.messages_per_sec = 1;
    settings.ws.max_sockets_per_user = 2;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, _, class) = new_class(&app).await;
    let (_student, token) = student(&app, &class).await;

    let mut ws = student_socket(&app, &token).await;
    for _ in 0..10 {
        ws.send(json!({"type": "ping"})).await;
    }
    assert_eq!(ws.close_code().await, 4002);

    let _one = student_socket(&app, &token).await;
    let _two = student_socket(&app, &token).await;
    let mut three = connect(&app, "/ws", &token).await;
    assert_eq!(three.close_code().await, 4009);
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.ws.heartbeat_interval_secs = 1;
    settings.ws.client_timeout_secs = 2;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, _, class) = new_class(&app).await;
    let (_student, token) = student(&app, &class).await;
    let mut ws = student_socket(&app, &token).await;
    // tungstenite answers pings by itself, but only while it is read: read nothing for 3.5 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut saw_ping = false;
    let code = loop {
        match tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Ping(_))) => saw_ping = true,
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_ping);
    assert_eq!(code, 4003);
}

#[tokio::test]
async fn failed_attempts_make_a_student_stuck_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (student_user, student_token) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;
    let mut ws = student_socket(&app, &student_token).await;
    for _ in 0..4 {
        ws.send(submit_msg(ex, false).1).await;
        ws.until("result", |v| v["type"] == "result").await;
    }
    let stuck = dash.delta("student_stuck").await;
    assert_eq!(stuck["student_id"], student_user.id);
    assert_eq!(stuck["exercise_id"], ex);
    assert_eq!(stuck["reason"], "failed_attempts");
    assert_eq!(stuck["failed_attempts"], 3);
    // Once: the fourth failure is an attempt, not another report.
    let fourth = dash
        .until("4th attempt", |v| {
            v["kind"] == "attempt_recorded" && v["progress"]["failed_attempts"] == 4
        })
        .await;
    assert_eq!(fourth["passed"], false);
    let (_, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    assert_eq!(snapshot["students"][0]["stuck_on"], json!([ex]));
    // A pass clears it.
    ws.send(submit_msg(ex, true).1).await;
    ws.until("result", |v| v["type"] == "result").await;
    dash.until("the pass", |v| {
        v["kind"] == "attempt_recorded" && v["passed"] == true
    })
    .await;
    let (_, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    assert_eq!(snapshot["students"][0]["stuck_on"], json!([]));
}

#[tokio::test]
async fn time_on_one_exercise_makes_a_student_stuck() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.ws.stuck_after_secs = 1;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (student_user, student_token) = student(&app, &class).await;
    let ex = exercises(&app, 1).await[0];
    let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;
    let mut ws = student_socket(&app, &student_token).await;
    ws.send(json!({"type": "focus", "exercise_id": ex})).await;
    let stuck = dash.delta("student_stuck").await;
    assert_eq!(stuck["student_id"], student_user.id);
    assert_eq!(stuck["reason"], "time_on_exercise");
    assert_eq!(stuck["exercise_id"], ex);
}

#[tokio::test]
async fn a_student_joining_shows_on_the_dashboard() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (mut dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
    assert_eq!(snapshot["students"], json!([]));
    let (student_user, _) = student(&app, &class).await;
    let joined = dash.delta("student_joined").await;
    assert_eq!(joined["student_id"], student_user.id);
    assert!(joined["pseudonym"].as_str().unwrap().starts_with("élève-"));
}

#[tokio::test]
async fn a_dashboard_that_never_reads_does_not_delay_another() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    // Small, but above the test's bursts of 50 changes: the live dashboard, read between bursts,
    // never overflows it; the stalled one does.
    settings.ws.outgoing_queue = 64;
    settings.ws.messages_per_sec = 1_000_000;
    settings.ws.message_burst = 1_000_000;
    // The stalled client answers no ping: keep it connected however long filling takes.
    settings.ws.client_timeout_secs = 3600;
    // Every presence change is an event here (no merging), so that they pile up.
    settings.ws.presence_interval_ms = 0;
    let app = TestApp::spawn_with(db, settings).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (_student, student_token) = student(&app, &class).await;
    let exs = exercises(&app, 2).await;

    // The stalled dashboard: a tiny receive buffer, and it reads nothing from now on.
    let mut stalled = connect_with(
        &app,
        &dashboard(&class),
        Cred::Cookie(&teacher_token),
        Some(&app.address),
        Some(4096),
    )
    .await
    .expect("upgrade");
    stalled.expect("welcome").await;
    stalled.expect("snapshot").await;
    let (mut live, _) = teacher_socket(&app, &class, &teacher_token).await;
    let mut ws = student_socket(&app, &student_token).await;
    live.delta("presence_changed").await;

    // Enough presence changes to fill every buffer between the server and the stalled client:
    // the kernel's send buffer (up to tcp_wmem's maximum: loopback's large segments grow it to
    // megabytes at once) and then some.
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    let target = wmem_max + (1 << 20);
    let (mut bytes, mut sent) = (0, 0);
    while bytes < target {
        for _ in 0..50 {
            ws.send(json!({"type": "focus", "exercise_id": exs[sent % 2]}))
                .await;
            sent += 1;
        }
        // The live dashboard gets each change as it happens.
        for i in sent - 50..sent {
            let Some(d) = live.try_next(WAIT).await else {
                panic!("the live dashboard stopped after {i} changes");
            };
            assert_eq!(d["kind"], "presence_changed");
            assert_eq!(d["exercise_id"], exs[i % 2]);
            bytes += d.to_string().len();
        }
        // Bounded: each change is over 100 bytes, so this is far past any buffer.
        assert!(
            sent < 1_000_000,
            "{sent} changes and the target is not reached"
        );
    }

    // The stalled one, reading at last: its backlog was dropped for a fresh snapshot.
    let mut deltas = 0;
    let snapshot = loop {
        let v = stalled.next().await;
        match v["type"].as_str() {
            Some("delta") => deltas += 1,
            Some("snapshot") => break v,
            _ => panic!("unexpected {v}"),
        }
    };
    assert_eq!(snapshot["reason"], "lagged");
    assert!(deltas < sent, "{deltas} of {sent}");
    assert_eq!(snapshot["students"][0]["online"], true);
}

#[tokio::test]
async fn stopping_the_server_closes_sockets_with_going_away() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_teacher, teacher_token, class) = new_class(&app).await;
    let (_student, student_token) = student(&app, &class).await;
    let mut ws = student_socket(&app, &student_token).await;
    let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(ws.close_code().await, 1001);
    assert_eq!(dash.close_code().await, 1001);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stopped in time")
        .expect("stop task");
}
