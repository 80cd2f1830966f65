//! `GET /api/v1/me` is served from each instance's cache (service/account_views.rs) — every page
//! of the browser app asks for it — and never shows anything older than the last change: each
//! write that changes a user's own view (a class joined, left, renamed, archived, an assignment,
//! a preference, a new join code) drops the cached answers at once, on this instance and, through
//! the Redis bus, on the others.

use serde_json::{Value, json};

use crate::both_backends;
use crate::health::test_redis_url;
use crate::helpers::{OtherInstance, TestApp, TestDb, TestUser, eventually, metric, new_client};

const CHAPTER: &str = "nsi-1-python-bases";
const HITS: &str = "nsi_account_view_cache_hits_total ";

/// `user`'s `/me`, asserting whether it came from the cache (the app's hit counter).
async fn me(app: &TestApp, user: &TestUser, cached: bool) -> Value {
    let before = metric(app, HITS).await;
    let body = user.get_json("/api/v1/me", 200).await;
    let hit = metric(app, HITS).await - before;
    assert_eq!(hit, f64::from(u8::from(cached)), "cached: {cached}, {body}");
    body
}

both_backends!(
    me_is_cached_until_what_it_shows_changes,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let student = app.student_in(&class).await;

        let first = me(&app, &student, false).await;
        assert_eq!(me(&app, &student, true).await, first);
        assert_eq!(first["classes"][0]["assignments"], json!([]));

        // An assignment: the student's next /me shows it, then is cached again.
        let path = format!("/api/v1/classrooms/{}/assignments/{CHAPTER}", class.id);
        teacher
            .put_json(&path, &json!({ "due_at": 1_900_000_000_000_i64 }), 200)
            .await;
        let assigned = me(&app, &student, false).await;
        assert_eq!(
            assigned["classes"][0]["assignments"][0]["chapter_slug"],
            CHAPTER
        );
        me(&app, &student, true).await;
        teacher.delete(&path, 204).await;
        assert_eq!(
            me(&app, &student, false).await["classes"][0]["assignments"],
            json!([])
        );

        // The class renamed, then archived.
        let class_path = format!("/api/v1/classrooms/{}", class.id);
        teacher
            .patch_json(&class_path, &json!({ "name": "Terminale NSI" }), 200)
            .await;
        assert_eq!(
            me(&app, &student, false).await["classes"][0]["name"],
            "Terminale NSI"
        );
        teacher
            .patch_json(&class_path, &json!({ "archived": true }), 200)
            .await;
        assert!(me(&app, &student, false).await["classes"][0]["archived_at"].is_i64());
        teacher
            .patch_json(&class_path, &json!({ "archived": false }), 200)
            .await;
        assert!(me(&app, &student, false).await["classes"][0]["archived_at"].is_null());

        // The student's own preference.
        student
            .patch_json("/api/v1/me", &json!({ "leaderboard_opt_out": true }), 200)
            .await;
        assert_eq!(me(&app, &student, false).await["leaderboard_opt_out"], true);

        // The teacher's view: the number of students, and a new join code.
        let teacher_me = me(&app, &teacher, false).await;
        assert_eq!(teacher_me["classes"][0]["student_count"], 1);
        me(&app, &teacher, true).await;
        let other = app.student_in(&class).await;
        assert_eq!(
            me(&app, &teacher, false).await["classes"][0]["student_count"],
            2
        );
        let code = teacher
            .post_json(&format!("{class_path}/join-code"), &json!({}), 200)
            .await;
        let shown = me(&app, &teacher, false).await;
        assert_eq!(shown["classes"][0]["join_code"], code["join_code"]);
        assert_ne!(
            shown["classes"][0]["join_code"],
            teacher_me["classes"][0]["join_code"]
        );

        // Joining a second class with the same account, then leaving the first.
        let second_teacher = app.signup_teacher().await;
        let second = app.create_classroom(&second_teacher).await;
        me(&app, &other, false).await;
        other
        .post_json(
            "/api/v1/auth/join",
            &json!({ "join_code": second.join_code, "pseudonym": "Deuxième", "as_current_user": true }),
            201,
        )
        .await;
        let classes = me(&app, &other, false).await["classes"].clone();
        assert_eq!(classes.as_array().unwrap().len(), 2, "{classes}");
        other
            .delete(&format!("/api/v1/me/classes/{}", class.id), 204)
            .await;
        let classes = me(&app, &other, false).await["classes"].clone();
        assert_eq!(classes.as_array().unwrap().len(), 1, "{classes}");
        assert_eq!(classes[0]["id"], second.id);

        // Removed from their last class by the teacher: signed out, and /me says so.
        teacher
            .delete(&format!("{class_path}/students/{}", student.id), 204)
            .await;
        student.get_json("/api/v1/me", 401).await;
    }
);

async fn redis_ok(address: &str) -> bool {
    let Ok(response) = new_client().get(format!("{address}/readyz")).send().await else {
        return false;
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["redis"] == "ok" && body["status"] == "ready"
}

both_backends!(
    a_change_on_one_instance_reaches_the_others_cache,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.redis.url = secrecy::SecretString::from(test_redis_url());
        settings.redis.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        eventually("both instances tied to Redis", || async {
            redis_ok(&a.address).await && redis_ok(&b.address).await
        })
        .await;
        let teacher = a.signup_teacher().await;
        let class = a.create_classroom(&teacher).await;
        let student = a.student_in(&class).await;
        let student_on_b = student.at(&b.address);

        // B caches the student's view…
        student_on_b.get_json("/api/v1/me", 200).await;
        let cached = student_on_b.get_json("/api/v1/me", 200).await;
        assert_eq!(cached["classes"][0]["assignments"], json!([]));
        // …the teacher assigns a chapter on A: B's next answers show it.
        let path = format!("/api/v1/classrooms/{}/assignments/{CHAPTER}", class.id);
        teacher.put_json(&path, &json!({}), 200).await;
        eventually("B's /me shows the assignment made on A", || async {
        student_on_b.get_json("/api/v1/me", 200).await["classes"][0]["assignments"][0]
            ["chapter_slug"]
            == CHAPTER
    })
    .await;
        teacher
            .patch_json(
                &format!("/api/v1/classrooms/{}", class.id),
                &json!({ "name": "Renommée sur A" }),
                200,
            )
            .await;
        eventually("B's /me shows the new name", || async {
            student_on_b.get_json("/api/v1/me", 200).await["classes"][0]["name"] == "Renommée sur A"
        })
        .await;
        b.stop().await;
        a.stop().await;
    }
);
