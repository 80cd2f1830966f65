//! The school `nsi-live admin seed-load` wrote, as its JSON fixture describes it.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// The fixture format this generator reads (`src/load_school.rs`, `FIXTURE_VERSION`).
const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub version: u32,
    pub recovery_code: String,
    pub chapter: String,
    pub teachers: Vec<Teacher>,
    pub classes: Vec<Class>,
    pub students: Vec<Student>,
    pub exercises: Vec<Exercise>,
}

#[derive(Debug, Deserialize)]
pub struct Teacher {
    pub token: String,
}

#[derive(Debug, Deserialize)]
pub struct Class {
    pub id: i64,
    /// Index into `teachers`.
    pub teacher: usize,
    pub join_code: String,
}

#[derive(Debug, Deserialize)]
pub struct Student {
    /// Index into `classes`.
    pub class: usize,
    pub pseudonym: String,
    pub token: String,
}

/// A Python exercise of the chapter, with its test names.
#[derive(Debug, Deserialize)]
pub struct Exercise {
    pub id: i64,
    pub tests: Vec<String>,
}

impl Fixture {
    pub fn load(path: &Path) -> anyhow::Result<Fixture> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let fixture: Fixture = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a seed-load fixture", path.display()))?;
        if fixture.version != VERSION {
            bail!(
                "{}: fixture version {} (this generator reads {VERSION})",
                path.display(),
                fixture.version
            );
        }
        if fixture.students.is_empty() || fixture.exercises.is_empty() {
            bail!("{}: no students or no exercises", path.display());
        }
        Ok(fixture)
    }
}

impl Exercise {
    /// The browser's report for this exercise: every test passed, or the first one failed.
    pub fn answer(&self, passed: bool) -> Value {
        let tests: Vec<Value> = self
            .tests
            .iter()
            .enumerate()
            .map(|(i, name)| json!({ "name": name, "passed": passed || i > 0 }))
            .collect();
        json!({ "code": "# charge\nprint('ok')\n", "tests": tests })
    }
}
