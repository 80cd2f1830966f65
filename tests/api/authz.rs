//! Who may do what: every protected route tried by nobody, another class's student, another
//! teacher, one of the class's students and the class's teacher. Policy: 401 when nobody is signed
//! in, 403 when the role is wrong (a student on a teacher's route), 404 when the resource is not
//! the caller's (as if it did not exist). And the cross-site request guard.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestUser, assert_error};

const CHAPTER: &str = "nsi-1-python-bases";

/// One route and the status each kind of caller must get.
struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    /// anonymous, other student, other teacher, class student, owner.
    expect: [u16; 5],
}

fn case(method: Method, path: String, body: Option<Value>, expect: [u16; 5]) -> Case {
    Case {
        method,
        path,
        body,
        expect,
    }
}

both_backends!(
    every_route_checks_role_and_ownership,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup_teacher().await;
        let class = app.create_classroom(&owner).await;
        let student = app.student_in(&class).await;
        let target = app.student_in(&class).await; // acted upon by reset and removal
        let owner_student = app.student_in(&class).await; // checked out of another teacher's reach
        let other_teacher = app.signup_teacher().await;
        let other_class = app.create_classroom(&other_teacher).await;
        let other_student = app.student_in(&other_class).await;
        let anonymous = app.anonymous();
        let callers: [(&str, &TestUser); 5] = [
            ("anonymous", &anonymous),
            ("other student", &other_student),
            ("other teacher", &other_teacher),
            ("class student", &student),
            ("owner", &owner),
        ];

        let c = format!("/api/v1/classrooms/{}", class.id);
        let t = target.id;
        use Method as M;
        // In order: a case that changes something comes after the cases that read it.
        let cases = [
            case(M::GET, "/api/v1/me".into(), None, [401, 200, 200, 200, 200]),
            case(
                M::GET,
                "/api/v1/me/classes".into(),
                None,
                [401, 200, 403, 200, 403],
            ),
            case(
                M::GET,
                "/api/v1/classrooms".into(),
                None,
                [401, 403, 200, 403, 200],
            ),
            case(M::GET, c.clone(), None, [401, 404, 404, 200, 200]),
            case(
                M::GET,
                format!("{c}/students"),
                None,
                [401, 403, 404, 403, 200],
            ),
            case(
                M::GET,
                format!("{c}/assignments"),
                None,
                [401, 404, 404, 200, 200],
            ),
            case(
                M::PATCH,
                c.clone(),
                Some(json!({ "name": "Renommée" })),
                [401, 403, 404, 403, 200],
            ),
            case(
                M::PUT,
                format!("{c}/assignments/{CHAPTER}"),
                Some(json!({ "due_at": null })),
                [401, 403, 404, 403, 200],
            ),
            case(
                M::DELETE,
                format!("{c}/assignments/{CHAPTER}"),
                None,
                [401, 403, 404, 403, 204],
            ),
            case(
                M::POST,
                format!("{c}/join-code"),
                Some(json!({})),
                [401, 403, 404, 403, 200],
            ),
            case(
                M::POST,
                format!("{c}/students/{t}/recovery-code"),
                Some(json!({})),
                [401, 403, 404, 403, 200],
            ),
            case(
                M::DELETE,
                format!("{c}/students/{t}"),
                None,
                [401, 403, 404, 403, 204],
            ),
            case(
                M::POST,
                "/api/v1/classrooms".into(),
                Some(json!({ "name": "Nouvelle" })),
                [401, 403, 201, 403, 201],
            ),
            case(
                M::PATCH,
                "/api/v1/me".into(),
                Some(json!({ "leaderboard_opt_out": true })),
                [401, 200, 200, 200, 200],
            ),
            // Last: the class student leaves (their only class, so their account closes).
            case(
                M::DELETE,
                format!("/api/v1/me/classes/{}", class.id),
                None,
                [401, 404, 403, 204, 403],
            ),
        ];
        for case in &cases {
            for ((who, user), expected) in callers.iter().zip(case.expect) {
                let (status, body) = user
                    .request(case.method.clone(), &case.path, case.body.as_ref())
                    .await;
                assert_eq!(
                    status, expected,
                    "{} {} as {who}: {body}",
                    case.method, case.path
                );
                if status >= 400 {
                    assert!(
                        body["error"].is_string() && body["message"].is_string(),
                        "{} {} as {who}: {body}",
                        case.method,
                        case.path
                    );
                }
            }
        }

        // Lists hold only the caller's own things.
        let mine = other_teacher.get_json("/api/v1/classrooms", 200).await;
        assert!(
            mine.as_array().unwrap().iter().all(|c| c["id"] != class.id),
            "{mine}"
        );
        let me = other_student.get_json("/api/v1/me", 200).await;
        assert_eq!(me["classes"].as_array().unwrap().len(), 1);
        assert_eq!(me["classes"][0]["id"], other_class.id);

        // Through one's own class, another class's student is still out of reach.
        let oc = format!("/api/v1/classrooms/{}", other_class.id);
        for (method, path) in [
            (
                M::POST,
                format!("{oc}/students/{}/recovery-code", owner_student.id),
            ),
            (M::DELETE, format!("{oc}/students/{}", owner_student.id)),
        ] {
            let body = other_teacher
                .expect(method, &path, Some(&json!({})), 404)
                .await;
            assert_error(&body, "not_found");
        }
        owner_student.get_json("/api/v1/me", 200).await;
        // Ids that do not exist or are not ids: 404 like the others.
        for path in [
            "/api/v1/classrooms/999999".to_owned(),
            "/api/v1/classrooms/abc".to_owned(),
            format!("{c}/students/999999/recovery-code"),
        ] {
            let method = if path.ends_with("recovery-code") {
                M::POST
            } else {
                M::GET
            };
            owner.expect(method, &path, Some(&json!({})), 404).await;
        }
    }
);

both_backends!(cross_site_requests_are_refused, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let create = |origin: Option<&str>, referer: Option<&str>| {
        let mut b = teacher
            .builder(Method::POST, "/api/v1/classrooms")
            .json(&json!({ "name": "Classe" }));
        if let Some(o) = origin {
            b = b.header("Origin", o);
        }
        if let Some(r) = referer {
            b = b.header("Referer", r);
        }
        b.send()
    };

    // Another site, by Origin or (without Origin) by Referer: 403, and nothing happens.
    for (origin, referer) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("https://evil.example/page.html")),
        (Some("https://evil.example"), Some(app.address.as_str())),
    ] {
        let r = create(origin, referer).await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?} {referer:?}");
        assert_error(&r.json().await.unwrap(), "forbidden_origin");
    }
    assert_eq!(teacher.get_json("/api/v1/classrooms", 200).await, json!([]));

    // This site: accepted.
    let own_page = format!("{}/classes", app.address);
    let r = create(Some(&app.address), None).await.unwrap();
    assert_eq!(r.status(), 201);
    let r = create(None, Some(&own_page)).await.unwrap();
    assert_eq!(r.status(), 201);

    // Sign-in forms too (login CSRF): refused from another site.
    let r = app
        .anonymous()
        .builder(Method::POST, "/api/v1/auth/login")
        .header("Origin", "https://evil.example")
        .json(&json!({ "login": teacher.login, "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A Bearer client carries no ambient credential: no Origin check.
    let mut api = app.anonymous();
    let token = api
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": teacher.login, "password": teacher.password, "bearer": true }),
            200,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    api.token = Some(token);
    let r = api
        .builder(Method::POST, "/api/v1/classrooms")
        .header("Origin", "https://evil.example")
        .json(&json!({ "name": "Par API" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // A form post (what a cross-site page can send without asking): refused as not JSON.
    let r = teacher
        .builder(Method::POST, "/api/v1/classrooms")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=Formulaire")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_error(&r.json().await.unwrap(), "unsupported_media_type");
    let r = teacher
        .builder(Method::POST, "/api/v1/classrooms")
        .header("Content-Type", "text/plain")
        .body(r#"{"name":"Texte"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        teacher
            .get_json("/api/v1/classrooms", 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Reading is not state-changing: any Origin may GET (CORS still keeps the answer from it).
    let r = teacher
        .builder(Method::GET, "/api/v1/me")
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
});
