//! Accounts over HTTP: teacher sign-up and login, students joining with a code and a pseudonym,
//! recovery on another device, resets, classrooms and assignments, throttling, limits; and the
//! admin command line.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, OtherInstance, TEST_PASSWORD, TestApp, TestDb, assert_error, unique,
};

const CHAPTER: &str = "nsi-1-python-bases";

both_backends!(teacher_signs_up_logs_in_and_out, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher_as("Mme.Dupont", "Mme Dupont").await;
    let me = teacher.get_json("/api/v1/me", 200).await;
    assert_eq!(me["id"], teacher.id);
    assert_eq!(me["role"], "teacher");
    assert_eq!(me["login"], "mme.dupont", "logins are stored lower-cased");
    assert_eq!(me["display_name"], "Mme Dupont");
    assert_eq!(me["classes"], json!([]));
    assert!(me.get("password_hash").is_none());

    // The cookie is HttpOnly, SameSite=Lax, for the whole site; not Secure outside production.
    let response = app
        .anonymous()
        .builder(Method::POST, "/api/v1/auth/login")
        .json(&json!({ "login": "mme.dupont", "password": TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("nsi_session="), "{cookie}");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(part), "{part} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");

    // Another browser signs in with the login in any case.
    let other = app.login("MME.DUPONT ", TEST_PASSWORD).await;
    assert_eq!(other.id, teacher.id);

    // Wrong password and unknown login: the same 401, which says nothing about which was wrong.
    let anon = app.anonymous();
    let wrong = anon
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": "mme.dupont", "password": "not the password" }),
            401,
        )
        .await;
    assert_error(&wrong, "invalid_credentials");
    let unknown = anon
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": "nobody", "password": "not the password" }),
            401,
        )
        .await;
    assert_eq!(wrong, unknown);

    // Logout ends this browser's session only.
    teacher
        .post_json("/api/v1/auth/logout", &json!({}), 204)
        .await;
    assert_error(&teacher.get_json("/api/v1/me", 401).await, "unauthorized");
    other.get_json("/api/v1/me", 200).await;
    // Logging out twice, or anonymously, is harmless.
    teacher
        .post_json("/api/v1/auth/logout", &json!({}), 204)
        .await;

    // Sign-up refusals.
    let taken = anon
        .post_json(
            "/api/v1/auth/signup",
            &json!({ "login": "mme.dupont", "display_name": "X", "password": TEST_PASSWORD }),
            409,
        )
        .await;
    assert_error(&taken, "login_taken");
    for (body, code) in [
        (
            json!({ "login": "a b", "display_name": "X", "password": TEST_PASSWORD }),
            "invalid_login",
        ),
        (
            json!({ "login": "m.martin", "display_name": "X", "password": "short" }),
            "invalid_password",
        ),
        (
            json!({ "login": "m.martin", "display_name": "", "password": TEST_PASSWORD }),
            "invalid_display_name",
        ),
        (json!({ "login": "m.martin" }), "invalid_body"),
        (
            json!({ "login": "m.martin", "display_name": "X", "password": TEST_PASSWORD, "role": "admin" }),
            "invalid_body",
        ),
    ] {
        assert_error(
            &anon.post_json("/api/v1/auth/signup", &body, 400).await,
            code,
        );
    }
});

both_backends!(a_teacher_changes_their_password, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let login = teacher.login.clone().unwrap();
    let laptop = app.login(&login, TEST_PASSWORD).await;
    let change =
        |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
    assert_error(
        &teacher
            .post_json(
                "/api/v1/me/password",
                &change("pas le bon", "nouveau mot de passe"),
                403,
            )
            .await,
        "wrong_password",
    );
    assert_error(
        &teacher
            .post_json("/api/v1/me/password", &change(TEST_PASSWORD, "court"), 400)
            .await,
        "invalid_password",
    );
    let body = teacher
        .post_json(
            "/api/v1/me/password",
            &change(TEST_PASSWORD, "nouveau mot de passe"),
            200,
        )
        .await;
    assert_eq!(body["user"]["id"], teacher.id);
    // This browser got a fresh session; every other one has ended.
    teacher.get_json("/api/v1/me", 200).await;
    laptop.get_json("/api/v1/me", 401).await;
    app.anonymous()
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": login, "password": TEST_PASSWORD }),
            401,
        )
        .await;
    app.login(&login, "nouveau mot de passe").await;
    // Students have no password.
    let class = app.create_classroom(&teacher).await;
    let student = app.student_in(&class).await;
    student
        .post_json(
            "/api/v1/me/password",
            &change("x", "nouveau mot de passe"),
            403,
        )
        .await;
});

both_backends!(bearer_tokens_work_and_die_on_logout, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let mut api = app.anonymous();
    let body = api
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": teacher.login, "password": TEST_PASSWORD, "bearer": true }),
            200,
        )
        .await;
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 43);
    assert!(body["expires_at"].as_i64().is_some());
    api.token = Some(token.clone());
    assert_eq!(api.get_json("/api/v1/me", 200).await["id"], teacher.id);
    api.post_json("/api/v1/auth/logout", &json!({}), 204).await;
    assert_error(&api.get_json("/api/v1/me", 401).await, "unauthorized");
    // A made-up token is simply not signed in.
    api.token = Some("A".repeat(43));
    api.get_json("/api/v1/me", 401).await;
    api.token = Some("garbage".into());
    api.get_json("/api/v1/me", 401).await;
});

both_backends!(
    sessions_are_checked_by_every_instance_and_end_everywhere,
    |backend| async move {
        // Two instances on one database, each caching sessions for one second.
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.auth.session_cache_ttl_secs = 1;
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;

        let teacher = a.signup_teacher().await;
        let mut api = a.anonymous();
        let token = api
            .post_json(
                "/api/v1/auth/login",
                &json!({ "login": teacher.login, "password": TEST_PASSWORD, "bearer": true }),
                200,
            )
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        api.token = Some(token);
        let mut on_b = a.anonymous();
        on_b.address = b.address.clone();
        on_b.token = api.token.clone();
        // A session opened on A works on B (B checks the database, then caches it).
        assert_eq!(on_b.get_json("/api/v1/me", 200).await["id"], teacher.id);
        // Logout on A: at once on A; on B once its cache entry is older than the TTL.
        api.post_json("/api/v1/auth/logout", &json!({}), 204).await;
        api.get_json("/api/v1/me", 401).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        on_b.get_json("/api/v1/me", 401).await;
        b.stop().await;
    }
);

both_backends!(
    join_creates_a_student_who_recovers_on_another_device,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        assert_eq!(class.join_code.len(), 6);
        assert!(
            class
                .join_code
                .chars()
                .all(|c| "ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(c)),
            "{}",
            class.join_code
        );

        // Join with the code typed in lower case.
        let anon = app.anonymous();
        let joined = anon
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class.join_code.to_lowercase(), "pseudonym": "  Léa  M " }),
                201,
            )
            .await;
        assert_eq!(joined["pseudonym"], "Léa M");
        assert_eq!(joined["user"]["role"], "student");
        assert_eq!(joined["classroom"]["id"], class.id);
        assert_eq!(joined["classroom"]["teacher_name"], "Mme Test");
        let code = joined["recovery_code"].as_str().unwrap().to_owned();
        assert_eq!(code.len(), 11, "{code}");
        assert_eq!(&code[5..6], "-");
        let student_id = joined["user"]["id"].as_i64().unwrap();

        // The joining browser is signed in.
        let me = anon.get_json("/api/v1/me", 200).await;
        assert_eq!(me["id"], student_id);
        assert_eq!(me["role"], "student");
        assert!(me.get("login").is_none());
        assert_eq!(me["classes"][0]["id"], class.id);
        assert_eq!(me["classes"][0]["pseudonym"], "Léa M");
        assert!(
            me["classes"][0].get("join_code").is_none(),
            "students do not see the join code"
        );
        // The recovery code is shown once: never again.
        assert!(!me.to_string().contains(&code[..5]));

        let roster = teacher
            .get_json(&format!("/api/v1/classrooms/{}/students", class.id), 200)
            .await;
        assert_eq!(
            roster,
            json!([{ "student_id": student_id, "pseudonym": "Léa M",
                     "joined_at": roster[0]["joined_at"] }])
        );
        assert_eq!(
            teacher
                .get_json(&format!("/api/v1/classrooms/{}", class.id), 200)
                .await["student_count"],
            1
        );

        // A new device: class code + pseudonym (any case, accents optional) + personal code
        // (any case, dash optional).
        let device = app.anonymous();
        let back = device
            .post_json(
                "/api/v1/auth/recover",
                &json!({
                    "join_code": class.join_code,
                    "pseudonym": "lea m",
                    "recovery_code": code.to_lowercase().replace('-', ""),
                }),
                200,
            )
            .await;
        assert_eq!(back["user"]["id"], student_id);
        assert_eq!(device.get_json("/api/v1/me", 200).await["id"], student_id);
        // The first device is still signed in too.
        anon.get_json("/api/v1/me", 200).await;

        // Any mistake: the same 401.
        let other_class = app.create_classroom(&teacher).await;
        for (join_code, pseudonym, recovery_code) in [
            (class.join_code.as_str(), "Léa M", "ABCDE-FGH23"),
            (class.join_code.as_str(), "Léo M", code.as_str()),
            (other_class.join_code.as_str(), "Léa M", code.as_str()),
            ("ZZZZZZ", "Léa M", code.as_str()),
            ("?", "Léa M", code.as_str()),
        ] {
            let body = app
                .anonymous()
                .post_json(
                    "/api/v1/auth/recover",
                    &json!({ "join_code": join_code, "pseudonym": pseudonym,
                             "recovery_code": recovery_code }),
                    401,
                )
                .await;
            assert_error(&body, "invalid_credentials");
        }
    }
);

both_backends!(
    wrong_codes_and_pseudonyms_get_clear_4xx,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        app.join(&class.join_code, "Léa").await;
        let anon = app.anonymous();
        let join =
            |code: &str, pseudonym: &str| json!({ "join_code": code, "pseudonym": pseudonym });

        // Unknown or malformed join code: 404 with a message.
        for code in ["ZZZZZZ", "abc", "", "IIIIII"] {
            let body = anon
                .post_json("/api/v1/auth/join", &join(code, "Tom"), 404)
                .await;
            assert_error(&body, "not_found");
            assert!(body["message"].as_str().unwrap().contains("Code de classe"));
        }
        // Invalid pseudonyms: 400, and nothing is created.
        for pseudonym in ["a", " ", "Tom\nJones", "Tom\u{200B}", &"x".repeat(33)] {
            let body = anon
                .post_json("/api/v1/auth/join", &join(&class.join_code, pseudonym), 400)
                .await;
            assert_error(&body, "invalid_pseudonym");
        }
        // Taken in this class, however it is spelled: 409.
        for taken in ["Léa", "LEA", "lea", " Le\u{301}a "] {
            let body = anon
                .post_json("/api/v1/auth/join", &join(&class.join_code, taken), 409)
                .await;
            assert_error(&body, "pseudonym_taken");
        }
        anon.get_json("/api/v1/me", 401).await;
        let roster = teacher
            .get_json(&format!("/api/v1/classrooms/{}/students", class.id), 200)
            .await;
        assert_eq!(roster.as_array().unwrap().len(), 1, "{roster}");
        // The same pseudonym in another class is fine.
        let other = app.create_classroom(&teacher).await;
        app.join(&other.join_code, "Léa").await;
        // Missing fields: 400.
        assert_error(
            &anon
                .post_json(
                    "/api/v1/auth/join",
                    &json!({ "join_code": class.join_code }),
                    400,
                )
                .await,
            "invalid_body",
        );
    }
);

both_backends!(
    on_a_shared_computer_the_next_student_gets_their_own_account,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        // Alice joins and leaves the browser signed in; Bob joins from the same browser.
        let mut browser = app.join(&class.join_code, "Alice").await;
        let alice_id = browser.id;
        let bob = browser
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class.join_code, "pseudonym": "Bob" }),
                201,
            )
            .await;
        assert_ne!(bob["user"]["id"], alice_id, "Bob landed in Alice's account");
        assert!(bob["recovery_code"].is_string(), "{bob}");
        browser.id = bob["user"]["id"].as_i64().unwrap();
        let me = browser.get_json("/api/v1/me", 200).await;
        assert_eq!(me["id"], browser.id, "{me}");
        assert_eq!(me["display_name"], "Bob", "{me}");
        let classes = browser.get_json("/api/v1/me/classes", 200).await;
        assert_eq!(classes.as_array().unwrap().len(), 1);
        assert_eq!(classes[0]["pseudonym"], "Bob");
        // Alice's account is untouched and still recoverable; both are in the roster.
        let roster = teacher
            .get_json(&format!("/api/v1/classrooms/{}/students", class.id), 200)
            .await;
        assert_eq!(roster.as_array().unwrap().len(), 2, "{roster}");
        // Asking to join as the current user without a session: 401.
        let (status, _) = app
            .anonymous()
            .request(
                Method::POST,
                "/api/v1/auth/join",
                Some(&json!({ "join_code": class.join_code, "pseudonym": "Carl", "as_current_user": true })),
            )
            .await;
        assert_eq!(status, 401);
    }
);

both_backends!(
    a_signed_in_student_joins_more_classes_with_one_account,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let snt = app.create_classroom(&teacher).await;
        let other_teacher = app.signup_teacher().await;
        let nsi = app.create_classroom(&other_teacher).await;
        let student = app.join(&snt.join_code, "Sam").await;

        let body = student
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": nsi.join_code, "pseudonym": "Samuel", "as_current_user": true }),
                201,
            )
            .await;
        assert_eq!(body["user"]["id"], student.id);
        assert!(
            body.get("recovery_code").is_none(),
            "an existing account keeps its recovery code: {body}"
        );
        let classes = student.get_json("/api/v1/me/classes", 200).await;
        let pseudonyms: Vec<&str> = classes
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["pseudonym"].as_str().unwrap())
            .collect();
        assert_eq!(pseudonyms, ["Sam", "Samuel"]);

        // Joining a class one is already in: 409.
        let again = student
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": nsi.join_code, "pseudonym": "Other", "as_current_user": true }),
                409,
            )
            .await;
        assert_error(&again, "already_enrolled");
        // The personal code works through either class.
        app.anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({ "join_code": nsi.join_code, "pseudonym": "Samuel",
                         "recovery_code": student.recovery_code }),
                200,
            )
            .await;
        // A signed-in teacher cannot join as a student.
        let refused = teacher
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": nsi.join_code, "pseudonym": "Prof" }),
                403,
            )
            .await;
        assert_error(&refused, "signed_in_as_teacher");

        // Leaving one class keeps the account; leaving the last one closes it.
        student
            .delete(&format!("/api/v1/me/classes/{}", snt.id), 204)
            .await;
        student
            .delete(&format!("/api/v1/me/classes/{}", snt.id), 404)
            .await;
        assert_eq!(
            student.get_json("/api/v1/me/classes", 200).await[0]["id"],
            nsi.id
        );
        student
            .delete(&format!("/api/v1/me/classes/{}", nsi.id), 204)
            .await;
        student.get_json("/api/v1/me", 401).await;
    }
);

both_backends!(
    a_reset_recovery_code_replaces_the_old_one_and_ends_sessions,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let student = app.join(&class.join_code, "Nina").await;
        let old_code = student.recovery_code.clone().unwrap();
        // A second device signed in with the old code.
        let tablet = app.anonymous();
        let recover = |code: &str| json!({ "join_code": class.join_code, "pseudonym": "Nina", "recovery_code": code });
        tablet
            .post_json("/api/v1/auth/recover", &recover(&old_code), 200)
            .await;

        let reset = teacher
            .post_json(
                &format!(
                    "/api/v1/classrooms/{}/students/{}/recovery-code",
                    class.id, student.id
                ),
                &json!({}),
                200,
            )
            .await;
        assert_eq!(reset["student_id"], student.id);
        let new_code = reset["recovery_code"].as_str().unwrap().to_owned();
        assert_ne!(new_code, old_code);

        // Every session of the student has ended, on every device.
        student.get_json("/api/v1/me", 401).await;
        tablet.get_json("/api/v1/me", 401).await;
        // The old code no longer works; the new one does.
        assert_error(
            &app.anonymous()
                .post_json("/api/v1/auth/recover", &recover(&old_code), 401)
                .await,
            "invalid_credentials",
        );
        let device = app.anonymous();
        let back = device
            .post_json("/api/v1/auth/recover", &recover(&new_code), 200)
            .await;
        assert_eq!(back["user"]["id"], student.id);
        device.get_json("/api/v1/me", 200).await;
        // Still in the class, with the same pseudonym.
        assert_eq!(
            teacher
                .get_json(&format!("/api/v1/classrooms/{}/students", class.id), 200)
                .await[0]["student_id"],
            student.id
        );
    }
);

both_backends!(
    a_removed_student_is_signed_out_and_cannot_recover,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let student = app.join(&class.join_code, "Max").await;
        let stays = app.join(&class.join_code, "Zoé").await;
        teacher
            .delete(
                &format!("/api/v1/classrooms/{}/students/{}", class.id, student.id),
                204,
            )
            .await;
        teacher
            .delete(
                &format!("/api/v1/classrooms/{}/students/{}", class.id, student.id),
                404,
            )
            .await;
        student.get_json("/api/v1/me", 401).await;
        app.anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({ "join_code": class.join_code, "pseudonym": "Max",
                         "recovery_code": student.recovery_code }),
                401,
            )
            .await;
        stays.get_json("/api/v1/me", 200).await;
        let roster = teacher
            .get_json(&format!("/api/v1/classrooms/{}/students", class.id), 200)
            .await;
        assert_eq!(roster.as_array().unwrap().len(), 1);
        // The pseudonym is free again.
        app.join(&class.join_code, "Max").await;
    }
);

both_backends!(
    a_pseudonym_with_markup_is_stored_and_returned_as_text,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let pseudonym = "<script>alert(1)</script>";
        let student = app.join(&class.join_code, pseudonym).await;

        let response = teacher
            .builder(
                Method::GET,
                &format!("/api/v1/classrooms/{}/students", class.id),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let roster: Value = response.json().await.unwrap();
        assert_eq!(roster[0]["pseudonym"], pseudonym);
        let me = student.get_json("/api/v1/me", 200).await;
        assert_eq!(me["display_name"], pseudonym);
        assert_eq!(me["classes"][0]["pseudonym"], pseudonym);
        // And it signs in with it like any other pseudonym.
        app.anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({ "join_code": class.join_code, "pseudonym": pseudonym,
                         "recovery_code": student.recovery_code }),
                200,
            )
            .await;
    }
);

both_backends!(
    classrooms_archive_rename_and_new_join_codes,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        assert_eq!(class.json["school"], "Lycée Test");
        assert_eq!(class.json["archived_at"], Value::Null);
        let student = app.join(&class.join_code, "Inès").await;
        let path = format!("/api/v1/classrooms/{}", class.id);

        let archived = teacher
            .patch_json(
                &path,
                &json!({ "archived": true, "name": "  NSI  2024 " }),
                200,
            )
            .await;
        assert!(archived["archived_at"].as_i64().is_some());
        assert_eq!(archived["name"], "NSI 2024");
        let refused = app
            .anonymous()
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class.join_code, "pseudonym": "Tard" }),
                403,
            )
            .await;
        assert_error(&refused, "classroom_archived");
        // Students already in can still sign in and see it, marked archived.
        app.anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({ "join_code": class.join_code, "pseudonym": "Inès",
                         "recovery_code": student.recovery_code }),
                200,
            )
            .await;
        let seen = student.get_json(&path, 200).await;
        assert!(seen["archived_at"].as_i64().is_some());
        assert_eq!(seen["name"], "NSI 2024");
        // Back from the archive: joins work again.
        let back = teacher
            .patch_json(&path, &json!({ "archived": false }), 200)
            .await;
        assert_eq!(back["archived_at"], Value::Null);
        assert_eq!(back["name"], "NSI 2024", "unchanged fields stay");
        app.join(&class.join_code, "Tard").await;
        assert_error(
            &teacher.patch_json(&path, &json!({ "name": "" }), 400).await,
            "invalid_name",
        );

        // A new join code: the old one stops working, students stay.
        let renewed = teacher
            .post_json(&format!("{path}/join-code"), &json!({}), 200)
            .await;
        let new_code = renewed["join_code"].as_str().unwrap().to_owned();
        assert_ne!(new_code, class.join_code);
        app.anonymous()
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class.join_code, "pseudonym": "Retard" }),
                404,
            )
            .await;
        app.join(&new_code, "Retard").await;
        assert_eq!(teacher.get_json(&path, 200).await["student_count"], 3);

        // The teacher's list, and /me, show the class.
        let list = teacher.get_json("/api/v1/classrooms", 200).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["join_code"], new_code.as_str());
        let me = teacher.get_json("/api/v1/me", 200).await;
        assert_eq!(me["classes"][0]["id"], class.id);
        // Creating needs a name; the school is optional.
        assert_error(
            &teacher
                .post_json("/api/v1/classrooms", &json!({ "name": " " }), 400)
                .await,
            "invalid_name",
        );
        let bare = teacher
            .post_json("/api/v1/classrooms", &json!({ "name": "SNT" }), 201)
            .await;
        assert_eq!(bare["school"], "");
    }
);

both_backends!(chapters_are_assigned_with_due_dates, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let student = app.student_in(&class).await;
    let path = format!("/api/v1/classrooms/{}/assignments", class.id);
    assert_eq!(teacher.get_json(&path, 200).await, json!([]));

    let due = 1_900_000_000_000_i64;
    let assigned = teacher
        .put_json(&format!("{path}/{CHAPTER}"), &json!({ "due_at": due }), 200)
        .await;
    assert_eq!(assigned["chapter_slug"], CHAPTER);
    assert_eq!(assigned["due_at"], due);
    assert!(
        assigned["chapter_title"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let first_assigned_at = assigned["assigned_at"].as_i64().unwrap();
    // Assigning again changes the due date, not when it was first assigned.
    let changed = teacher
        .put_json(
            &format!("{path}/{CHAPTER}"),
            &json!({ "due_at": null }),
            200,
        )
        .await;
    assert_eq!(changed["due_at"], Value::Null);
    assert_eq!(changed["assigned_at"], first_assigned_at);
    teacher
        .put_json(&format!("{path}/{CHAPTER}"), &json!({ "due_at": due }), 200)
        .await;

    // The student sees it, in /me/classes, /me and the class's assignments.
    let classes = student.get_json("/api/v1/me/classes", 200).await;
    assert_eq!(classes[0]["assignments"][0]["chapter_slug"], CHAPTER);
    assert_eq!(classes[0]["assignments"][0]["due_at"], due);
    let list = student.get_json(&path, 200).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        student.get_json("/api/v1/me", 200).await["classes"][0]["assignments"],
        list
    );

    // Unknown chapters and bad dates are refused.
    assert_error(
        &teacher
            .put_json(&format!("{path}/pas-un-chapitre"), &json!({}), 404)
            .await,
        "not_found",
    );
    assert_error(
        &teacher
            .put_json(
                &format!("{path}/{CHAPTER}"),
                &json!({ "due_at": 1_900_000_000 }),
                400,
            )
            .await,
        "invalid_due_at",
    );
    assert_error(
        &teacher
            .put_json(
                &format!("{path}/{CHAPTER}"),
                &json!({ "due_at": "demain" }),
                400,
            )
            .await,
        "invalid_body",
    );

    teacher.delete(&format!("{path}/{CHAPTER}"), 204).await;
    teacher.delete(&format!("{path}/{CHAPTER}"), 404).await;
    assert_eq!(student.get_json(&path, 200).await, json!([]));
});

both_backends!(preferences_are_saved, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let student = app.student_in(&class).await;
    assert_eq!(
        student.get_json("/api/v1/me", 200).await["leaderboard_opt_out"],
        false
    );
    let me = student
        .patch_json("/api/v1/me", &json!({ "leaderboard_opt_out": true }), 200)
        .await;
    assert_eq!(me["leaderboard_opt_out"], true);
    assert_eq!(
        student.get_json("/api/v1/me", 200).await["leaderboard_opt_out"],
        true
    );
    // Students keep their pseudonyms; teachers may rename themselves.
    assert_error(
        &student
            .patch_json("/api/v1/me", &json!({ "display_name": "Autre" }), 400)
            .await,
        "invalid_field",
    );
    let me = teacher
        .patch_json("/api/v1/me", &json!({ "display_name": "M. Nouveau" }), 200)
        .await;
    assert_eq!(me["display_name"], "M. Nouveau");
    assert_error(
        &teacher
            .patch_json("/api/v1/me", &json!({ "colour": "blue" }), 400)
            .await,
        "invalid_body",
    );
});

both_backends!(
    the_eleventh_failed_login_in_the_window_is_throttled,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let login = teacher.login.clone().unwrap();
        let anon = app.anonymous();
        let attempt = |password: &'static str| {
            anon.builder(Method::POST, "/api/v1/auth/login")
                .json(&json!({ "login": login, "password": password }))
                .send()
        };
        for i in 1..=10 {
            let r = attempt("wrong password").await.unwrap();
            assert_eq!(r.status(), 401, "attempt {i}");
        }
        let r = attempt("wrong password").await.unwrap();
        assert_eq!(r.status(), 429);
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        let body: Value = r.json().await.unwrap();
        assert_error(&body, "rate_limited");
        assert_eq!(body["retry_after"], retry_after);
        // Even the right password waits: that is what stops guessing.
        assert_eq!(attempt(TEST_PASSWORD).await.unwrap().status(), 429);
        // Guesses sent all at once are counted before their passwords are checked: no more
        // than the limit get through.
        let parallel = app.signup_teacher().await;
        let parallel_login = parallel.login.clone().unwrap();
        let statuses = futures_util::future::join_all((0..25).map(|_| {
            anon.builder(Method::POST, "/api/v1/auth/login")
                .json(&json!({ "login": parallel_login, "password": "wrong password" }))
                .send()
        }))
        .await;
        let mut wrong = 0;
        let mut throttled = 0;
        for r in statuses {
            match r.unwrap().status().as_u16() {
                401 => wrong += 1,
                429 => throttled += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!((wrong, throttled), (10, 15));
        // Other logins are not affected.
        let other = app.signup_teacher().await;
        app.login(other.login.as_deref().unwrap(), TEST_PASSWORD)
            .await;
        // The session the teacher already has keeps working.
        teacher.get_json("/api/v1/me", 200).await;
    }
);

both_backends!(bodies_over_the_limit_answer_413, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let big = json!({ "login": "x", "password": "y".repeat(1024 * 1024) });
    for (user, path) in [
        (&app.anonymous(), "/api/v1/auth/login"),
        (&teacher, "/api/v1/classrooms"),
        (&app.anonymous(), "/api/v1/auth/join"),
    ] {
        let body = user.post_json(path, &big, 413).await;
        assert_error(&body, "payload_too_large");
    }
    // Nothing was created.
    assert_eq!(teacher.get_json("/api/v1/classrooms", 200).await, json!([]));
});

both_backends!(
    invite_only_sign_up_needs_a_fresh_code,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.auth.signup = nsi_live::config::SignupMode::InviteOnly;
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let anon = app.anonymous();
        let signup = |login: &str, invite: Option<&str>| {
            json!({ "login": login, "display_name": "Prof", "password": TEST_PASSWORD,
                "invite_code": invite })
        };
        assert_error(
            &anon
                .post_json("/api/v1/auth/signup", &signup("prof1", None), 403)
                .await,
            "invite_required",
        );
        assert_error(
            &anon
                .post_json(
                    "/api/v1/auth/signup",
                    &signup("prof1", Some("AAAA-BBBB-CCCC-DDDD")),
                    403,
                )
                .await,
            "invalid_invite",
        );
        // An invite made the way the CLI makes it.
        let store = nsi_live::store::Store::connect(&settings.database)
            .await
            .unwrap();
        let code = "ABCD-EFGH-JKMN-PQRS";
        let now = nsi_live::domain::time::now_ms();
        store
            .create_invite(
                &nsi_live::domain::accounts::invite_hash(code),
                None,
                Some(now + 60_000),
                now,
            )
            .await
            .unwrap();
        store
            .create_invite(
                &nsi_live::domain::accounts::invite_hash("EXPI-RED2-EXPI-RED2"),
                None,
                Some(now - 1),
                now - 10,
            )
            .await
            .unwrap();
        store.close().await;
        assert_error(
            &anon
                .post_json(
                    "/api/v1/auth/signup",
                    &signup("prof1", Some("EXPI-RED2-EXPI-RED2")),
                    403,
                )
                .await,
            "invalid_invite",
        );
        // Typed in lower case without dashes.
        app.anonymous()
            .post_json(
                "/api/v1/auth/signup",
                &signup("prof1", Some("abcdefghjkmnpqrs")),
                201,
            )
            .await;
        // Used once only; a refused sign-up leaves no account behind.
        assert_error(
            &anon
                .post_json("/api/v1/auth/signup", &signup("prof2", Some(code)), 403)
                .await,
            "invalid_invite",
        );
        anon.post_json(
            "/api/v1/auth/login",
            &json!({ "login": "prof2", "password": TEST_PASSWORD }),
            401,
        )
        .await;
    }
);

/// Runs `nsi-live ARGS` on `db`'s database; returns (success, stdout, stderr).
pub(crate) fn run_cli(
    db: &TestDb,
    args: &[&str],
    stdin: &str,
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsi-live"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    match (&db.url, &db.sqlite_dir) {
        (Some(url), _) => cmd.env("DATABASE_URL", url),
        (None, Some(dir)) => cmd.env(
            "NSI__DATABASE__SQLITE_PATH",
            dir.path().join("test.db").to_str().unwrap(),
        ),
        (None, None) => unreachable!(),
    };
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_backends!(
    the_admin_cli_creates_accounts_and_invites,
    |backend: Backend| async move {
        let db = TestDb::new(backend).await;
        let login = unique("cli-prof-");
        let (ok, out, err) = run_cli(
            &db,
            &[
                "admin",
                "create-teacher",
                "--login",
                &login,
                "--name",
                "Mme CLI",
            ],
            "un mot de passe solide\n",
            &[],
        );
        assert!(ok, "{out}{err}");
        assert!(out.contains("Created teacher"), "{out}");
        assert!(!out.contains("solide") && !err.contains("solide"));
        // The same login again: refused, saying why.
        let (ok, _, err) = run_cli(
            &db,
            &["admin", "create-teacher", "--login", &login, "--name", "X"],
            "un mot de passe solide\n",
            &[],
        );
        assert!(!ok);
        assert!(err.contains("already taken"), "{err}");
        // An admin, with the password from the environment.
        let (ok, out, err) = run_cli(
            &db,
            &[
                "admin",
                "create-admin",
                "--login",
                "root",
                "--name",
                "Admin",
                "--password-env",
                "PW",
            ],
            "",
            &[("PW", "mot de passe admin")],
        );
        assert!(ok, "{out}{err}");
        // A password that is too short is refused before anything is created.
        let (ok, _, err) = run_cli(
            &db,
            &["admin", "create-teacher", "--login", "court", "--name", "X"],
            "court\n",
            &[],
        );
        assert!(!ok);
        assert!(err.contains("mot de passe"), "{err}");
        // A forgotten password, reset by the operator.
        let (ok, out, err) = run_cli(
            &db,
            &["admin", "reset-password", "--login", &login],
            "un autre mot de passe\n",
            &[],
        );
        assert!(ok, "{out}{err}");
        let (ok, _, err) = run_cli(
            &db,
            &["admin", "reset-password", "--login", "personne"],
            "un autre mot de passe\n",
            &[],
        );
        assert!(!ok);
        assert!(err.contains("no active account"), "{err}");
        let (ok, invite, err) = run_cli(&db, &["admin", "create-invite", "--days", "2"], "", &[]);
        assert!(ok, "{err}");
        let invite = invite.trim().to_owned();
        assert_eq!(invite.len(), 19, "{invite}");

        // The server on that database: they sign in; the invite opens a sign-up.
        let mut settings = db.settings();
        settings.auth.signup = nsi_live::config::SignupMode::InviteOnly;
        let app = TestApp::spawn_with(db, settings).await;
        app.anonymous()
            .post_json(
                "/api/v1/auth/login",
                &json!({ "login": login, "password": "un mot de passe solide" }),
                401,
            )
            .await;
        let teacher = app.login(&login, "un autre mot de passe").await;
        assert_eq!(teacher.role, "teacher");
        assert_eq!(
            teacher.get_json("/api/v1/me", 200).await["display_name"],
            "Mme CLI"
        );
        let admin = app.login("root", "mot de passe admin").await;
        assert_eq!(admin.role, "admin");
        // An admin runs classrooms like a teacher.
        app.create_classroom(&admin).await;
        app.anonymous()
            .post_json(
                "/api/v1/auth/signup",
                &json!({ "login": "invited", "display_name": "Invitée",
                         "password": TEST_PASSWORD, "invite_code": invite }),
                201,
            )
            .await;
        // The refused short-password account was never created.
        app.anonymous()
            .post_json(
                "/api/v1/auth/login",
                &json!({ "login": "court", "password": "court" }),
                401,
            )
            .await;
    }
);
