//! `nsi-live admin seed-load`: a school for load tests, written straight into the database, and
//! the JSON fixture the load generator (`loadtests/`) reads: every teacher's and student's
//! session token, the classes, and the exercises to submit with their test names.
//!
//! Every teacher shares one password and every student one recovery code (each hashed once):
//! the cost of a sign-in is measured on its own, not paid 10,000 times here. The tokens are
//! secrets: the fixture is for a throw-away load-test database only.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::auth::password;
use crate::auth::session::{new_token, token_hash};
use crate::config::Settings;
use crate::content;
use crate::domain::accounts::{generate_join_code, generate_recovery_code, normalize_code};
use crate::domain::catalogue::ExerciseKind;
use crate::domain::time::now_ms;
use crate::store::Store;
use crate::store::load_school::{SeedClass, SeedSchool, SeedStudent, SeedTeacher};

/// The chapter whose Python exercises the load generator submits (the portal's first chapter).
pub const LOAD_CHAPTER: &str = "nsi-1-python-bases";
/// Fixture format; the load generator refuses another one.
pub const FIXTURE_VERSION: u32 = 1;
/// Upper bounds, so that a typo does not fill a disk.
const MAX_TEACHERS: usize = 10_000;
const MAX_CLASSES: usize = 10_000;
const MAX_STUDENTS: usize = 1_000_000;

/// What `seed-load` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSchoolPlan {
    pub teachers: usize,
    pub classes: usize,
    pub students_per_class: usize,
    /// Starts every login and pseudonym, so that one database can hold several schools.
    pub prefix: String,
}

#[derive(Debug, Serialize)]
pub struct Fixture {
    pub version: u32,
    /// Every teacher's password (sign-in phases: `POST /api/v1/auth/login`).
    pub teacher_password: String,
    /// Every student's recovery code (sign-in phases: `POST /api/v1/auth/recover`).
    pub recovery_code: String,
    pub chapter: String,
    pub teachers: Vec<FixtureTeacher>,
    pub classes: Vec<FixtureClass>,
    pub students: Vec<FixtureStudent>,
    pub exercises: Vec<FixtureExercise>,
}

#[derive(Debug, Serialize)]
pub struct FixtureTeacher {
    pub id: i64,
    pub login: String,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct FixtureClass {
    pub id: i64,
    /// Index into `teachers`.
    pub teacher: usize,
    pub join_code: String,
}

#[derive(Debug, Serialize)]
pub struct FixtureStudent {
    pub id: i64,
    /// Index into `classes`.
    pub class: usize,
    pub pseudonym: String,
    pub token: String,
}

/// A Python exercise: a passing answer names every test (`{"code", "tests": [{name, passed}]}`).
#[derive(Debug, Serialize)]
pub struct FixtureExercise {
    pub id: i64,
    pub slug: String,
    pub tests: Vec<String>,
}

impl LoadSchoolPlan {
    pub fn check(&self) -> anyhow::Result<()> {
        if !(1..=MAX_TEACHERS).contains(&self.teachers) {
            bail!("--teachers must be between 1 and {MAX_TEACHERS}");
        }
        if !(1..=MAX_CLASSES).contains(&self.classes) {
            bail!("--classes must be between 1 and {MAX_CLASSES}");
        }
        if self.students_per_class == 0
            || self.classes.saturating_mul(self.students_per_class) > MAX_STUDENTS
        {
            bail!("--students (per class) must be at least 1, and {MAX_STUDENTS} in all at most");
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 12
            && self.prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !prefix_ok {
            bail!("--prefix must be 1–12 of a-z 0-9, starting with a letter");
        }
        Ok(())
    }
}

/// Seeds the school on the configured database and writes the fixture to `out`.
pub async fn seed(
    settings: &Settings,
    plan: &LoadSchoolPlan,
    out: &Path,
) -> anyhow::Result<Fixture> {
    plan.check()?;
    let started = Instant::now();
    // The catalogue is synced as the server would: a fresh database works, and the exercise ids
    // are those the server serves.
    let specs = content::load_dir(&settings.content.dir)?;
    let chapter = specs
        .iter()
        .flat_map(|c| &c.chapters)
        .find(|ch| ch.slug == LOAD_CHAPTER)
        .with_context(|| format!("the content has no chapter {LOAD_CHAPTER:?}"))?;
    let store = Store::connect(&settings.database).await?;
    let outcome = seed_on(&store, settings, plan, chapter, &specs).await;
    store.close().await;
    let fixture = outcome?;
    let json = serde_json::to_vec(&fixture)?;
    std::fs::write(out, json).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "Seeded {} teacher(s), {} class(es), {} student(s) with their sessions in {:.2} s; \
         fixture: {}",
        fixture.teachers.len(),
        fixture.classes.len(),
        fixture.students.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(fixture)
}

async fn seed_on(
    store: &Store,
    settings: &Settings,
    plan: &LoadSchoolPlan,
    chapter: &crate::domain::catalogue::ChapterSpec,
    specs: &[crate::domain::catalogue::CourseSpec],
) -> anyhow::Result<Fixture> {
    let ids = store.sync_catalogue(specs).await?;
    let mut exercises = Vec::new();
    for ex in &chapter.exercises {
        if ex.file.kind != ExerciseKind::Python || ex.file.tests.is_empty() {
            continue;
        }
        let id = ids
            .exercises
            .get(&ex.slug)
            .with_context(|| format!("exercise {} has no id after the sync", ex.slug))?;
        exercises.push(FixtureExercise {
            id: id.0,
            slug: ex.slug.clone(),
            tests: ex.file.tests.iter().map(|t| t.name.clone()).collect(),
        });
    }
    if exercises.is_empty() {
        bail!("the chapter {LOAD_CHAPTER:?} has no Python exercise with tests");
    }

    let teacher_password = new_token();
    let recovery_code = generate_recovery_code(&mut rand::rng());
    let password_hash = password::hash(teacher_password.clone()).await?;
    let recovery_code_hash = password::hash(normalize_code(&recovery_code)).await?;

    let prefix = &plan.prefix;
    let teacher_tokens: Vec<String> = (0..plan.teachers).map(|_| new_token()).collect();
    let teachers: Vec<SeedTeacher> = teacher_tokens
        .iter()
        .enumerate()
        .map(|(i, token)| SeedTeacher {
            login: format!("{prefix}.prof{i}"),
            display_name: format!("Prof {prefix} {i}"),
            session_hash: token_hash(token),
        })
        .collect();
    let mut codes = std::collections::HashSet::new();
    let mut rng = rand::rng();
    let classes: Vec<SeedClass> = (0..plan.classes)
        .map(|c| {
            let join_code = loop {
                let code = generate_join_code(&mut rng);
                if codes.insert(code.clone()) {
                    break code;
                }
            };
            SeedClass {
                teacher: c % plan.teachers,
                name: format!("Classe de charge {c}"),
                join_code,
            }
        })
        .collect();
    let student_count = plan.classes * plan.students_per_class;
    let student_tokens: Vec<String> = (0..student_count).map(|_| new_token()).collect();
    let students: Vec<SeedStudent> = student_tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let class = i / plan.students_per_class;
            SeedStudent {
                class,
                pseudonym: format!("{prefix}-{class}-{}", i % plan.students_per_class),
                session_hash: token_hash(token),
            }
        })
        .collect();
    let now = now_ms();
    let lifetime_ms = i64::try_from(settings.auth.session_lifetime_hours)
        .unwrap_or(i64::MAX)
        .saturating_mul(3_600_000);
    let school = SeedSchool {
        teachers,
        classes,
        students,
        password_hash,
        recovery_code_hash,
        school: format!("Lycée de charge {prefix}"),
        now,
        session_expires_at: now.saturating_add(lifetime_ms),
    };
    let seeded = store.seed_load_school(&school).await?;

    Ok(Fixture {
        version: FIXTURE_VERSION,
        teacher_password,
        recovery_code,
        chapter: LOAD_CHAPTER.to_owned(),
        teachers: school
            .teachers
            .into_iter()
            .zip(teacher_tokens)
            .zip(seeded.teachers)
            .map(|((t, token), id)| FixtureTeacher {
                id,
                login: t.login,
                token,
            })
            .collect(),
        classes: school
            .classes
            .into_iter()
            .zip(seeded.classes)
            .map(|(c, id)| FixtureClass {
                id,
                teacher: c.teacher,
                join_code: c.join_code,
            })
            .collect(),
        students: school
            .students
            .into_iter()
            .zip(student_tokens)
            .zip(seeded.students)
            .map(|((s, token), id)| FixtureStudent {
                id,
                class: s.class,
                pseudonym: s.pseudonym,
                token,
            })
            .collect(),
        exercises,
    })
}
