//! The catalogue API. Every answer is rendered once at start-up (the catalogue only changes with a
//! restart) and served as ready bytes: a page view costs a hash lookup.

use std::collections::HashMap;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use serde_json::{Value, json};

use crate::domain::catalogue::{Catalogue, Chapter, Exercise, ExerciseBody, choice_id};
use crate::domain::ids::ExerciseId;
use crate::error::{AppError, Result};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_courses)
        .service(get_chapter)
        .service(get_exercise);
}

/// The catalogue's JSON answers, rendered once. The HTTP adapter's own state: `startup` registers
/// it as app data beside `AppState`, which holds nothing of an adapter's.
#[derive(Debug)]
pub struct RenderedCatalogue {
    courses: Bytes,
    chapters: HashMap<String, Bytes>,
    exercises: HashMap<ExerciseId, Bytes>,
}

impl RenderedCatalogue {
    pub fn render(catalogue: &Catalogue) -> RenderedCatalogue {
        let courses: Vec<Value> = catalogue
            .courses
            .iter()
            .map(|c| {
                json!({
                    "slug": c.slug,
                    "title": c.title,
                    "level": c.level,
                    "description": c.description,
                    "chapters": c.chapters.iter().map(|ch| json!({
                        "slug": ch.slug,
                        "title": ch.title,
                        "exercise_count": ch.exercises.len(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let chapters = catalogue
            .courses
            .iter()
            .flat_map(|c| c.chapters.iter())
            .map(|ch| (ch.slug.clone(), to_bytes(&chapter_view(ch))))
            .collect();
        let exercises = catalogue
            .exercises()
            .map(|e| (e.id, to_bytes(&exercise_view(e))))
            .collect();
        RenderedCatalogue {
            courses: to_bytes(&Value::Array(courses)),
            chapters,
            exercises,
        }
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

fn chapter_view(ch: &Chapter) -> Value {
    json!({
        "id": ch.id,
        "slug": ch.slug,
        "title": ch.title,
        "description": ch.description,
        "course": { "slug": ch.course_slug, "title": ch.course_title },
        "blocks": ch.blocks,
        "exercises": ch.exercises.iter().map(|e| json!({
            "id": e.id,
            "slug": e.slug,
            "title": e.title,
            "type": e.kind,
            "xp_reward": e.xp_reward,
            "difficulty": e.difficulty,
        })).collect::<Vec<_>>(),
    })
}

/// Everything the browser needs to show and run an exercise. Never the reference solution, the
/// correct MCQ choices or the hints' text (revealing a hint costs XP).
fn exercise_view(e: &Exercise) -> Value {
    let mut v = json!({
        "id": e.id,
        "slug": e.slug,
        "title": e.title,
        "type": e.kind,
        "xp_reward": e.xp_reward,
        "difficulty": e.difficulty,
        "statement": e.statement,
        "chapter": { "slug": e.chapter_slug, "title": e.chapter_title },
        "course": { "slug": e.course_slug, "title": e.course_title },
        "hints": e.hints.iter().map(|h| json!({
            "id": h.id, "position": h.position, "xp_cost": h.xp_cost,
        })).collect::<Vec<_>>(),
    });
    let extra = match &e.body {
        ExerciseBody::Python {
            starter_code,
            tests,
            solution: _,
        } => json!({ "starter_code": starter_code, "tests": tests }),
        ExerciseBody::Parsons {
            lines,
            shown,
            indented,
            tests,
            solution: _,
        } => json!({
            // Shuffled, without indentation; ids reveal nothing of the order.
            "lines": shown.iter().filter_map(|i| lines.get(*i)).map(|l| json!({
                "id": l.id, "text": l.text,
            })).collect::<Vec<_>>(),
            "indent": indented,
            "tests": tests,
        }),
        ExerciseBody::Sql {
            schema,
            data,
            starter_code,
            order_matters,
            check_query,
            expected,
            solution: _,
        } => json!({
            "schema": schema,
            "data": data,
            "starter_code": starter_code,
            "order_matters": order_matters,
            "modifies_data": check_query.is_some(),
            "expected": expected,
        }),
        ExerciseBody::Mcq {
            choices,
            explanation: _,
        } => json!({
            "choices": choices.iter().enumerate().map(|(i, c)| json!({ "id": choice_id(i), "text": c.text }))
                .collect::<Vec<_>>(),
            "multiple": choices.iter().filter(|c| c.correct).count() > 1,
        }),
    };
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, extra) {
        map.extend(extra);
    }
    v
}

fn json_bytes(body: &Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        // Content changes only with a deploy; a short cache spares repeated page loads.
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(60),
        ]))
        .body(body.clone())
}

#[get("/courses")]
async fn list_courses(rendered: web::Data<RenderedCatalogue>) -> HttpResponse {
    json_bytes(&rendered.courses)
}

#[get("/chapters/{slug}")]
async fn get_chapter(
    rendered: web::Data<RenderedCatalogue>,
    slug: web::Path<String>,
) -> Result<HttpResponse> {
    rendered
        .chapters
        .get(slug.as_str())
        .map(json_bytes)
        .ok_or(AppError::NotFound("Chapitre introuvable."))
}

#[get("/exercises/{id}")]
async fn get_exercise(
    rendered: web::Data<RenderedCatalogue>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    ExerciseId::parse(&id)
        .and_then(|id| rendered.exercises.get(&id))
        .map(json_bytes)
        .ok_or(AppError::NotFound("Exercice introuvable."))
}
