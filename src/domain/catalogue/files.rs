//! What the content files say (`*File`, `*Spec`) and their validation: slugs, ordered names,
//! the fields each exercise type requires or forbids, and what spans files.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{BlockKind, ExerciseKind, Level, parsons_lines};

/// `course.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseFile {
    pub title: String,
    pub level: Level,
    pub description: String,
}

/// `chapter.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapterFile {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub kind: BlockKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub body: String,
}

/// One exercise file. Fields depend on `type`; [`ExerciseFile::validate`] checks which apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExerciseFile {
    pub title: String,
    #[serde(rename = "type")]
    pub kind: ExerciseKind,
    pub xp_reward: i32,
    #[serde(default = "default_difficulty")]
    pub difficulty: i32,
    pub statement: String,
    #[serde(default)]
    pub hints: Vec<HintFile>,
    // python, parsons (and sql for starter_code / solution)
    pub starter_code: Option<String>,
    pub solution: Option<String>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
    // sql
    pub schema: Option<String>,
    pub data: Option<String>,
    pub order_matters: Option<bool>,
    /// A data-changing exercise (INSERT/UPDATE/DELETE): the query whose result after the
    /// student's statements is compared with its result after `solution`'s.
    pub check_query: Option<String>,
    // mcq
    #[serde(default)]
    pub choices: Vec<Choice>,
    pub explanation: Option<String>,
    // python, sql: known wrong answers and accepted alternatives, for the content test only
    // (never served). See content/README.md.
    #[serde(default)]
    pub wrong_answers: Vec<KnownAnswer>,
    #[serde(default)]
    pub alternatives: Vec<KnownAnswer>,
}

/// A wrong answer the tests must refuse, or an alternative they must accept (`why` in French).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownAnswer {
    pub why: String,
    pub code: String,
}

fn default_difficulty() -> i32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HintFile {
    pub text: String,
    pub xp_cost: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub text: String,
    pub correct: bool,
}

/// A course as loaded from disk, before the database gives it ids.
#[derive(Debug, Clone)]
pub struct CourseSpec {
    pub slug: String,
    pub position: i32,
    pub file: CourseFile,
    pub chapters: Vec<ChapterSpec>,
}

#[derive(Debug, Clone)]
pub struct ChapterSpec {
    pub slug: String,
    pub position: i32,
    pub file: ChapterFile,
    pub exercises: Vec<ExerciseSpec>,
}

#[derive(Debug, Clone)]
pub struct ExerciseSpec {
    pub slug: String,
    pub position: i32,
    pub file: ExerciseFile,
}

pub const MAX_SLUG_LEN: usize = 64;

/// `a-z`, `0-9` and single dashes between words: safe in URLs and file names.
pub fn is_valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SLUG_LEN
        && s.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Splits a file or folder name `NN-slug` into its order and its slug.
pub fn split_ordered_name(name: &str) -> Result<(i32, String), String> {
    let (num, slug) = name
        .split_once('-')
        .ok_or_else(|| format!("name {name:?} must look like NN-slug (e.g. 03-boucles)"))?;
    let position: i32 = num
        .parse()
        .ok()
        .filter(|_| !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("name {name:?} must start with a number and a dash (e.g. 03-)"))?;
    if !is_valid_slug(slug) {
        return Err(format!(
            "slug {slug:?} (from {name:?}) must be lower-case letters, digits and single dashes, at most {MAX_SLUG_LEN} characters"
        ));
    }
    Ok((position, slug.to_owned()))
}

fn non_blank(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("`{field}` must not be empty"))
    } else {
        Ok(())
    }
}

fn require<'a>(kind: ExerciseKind, field: &str, v: &'a Option<String>) -> Result<&'a str, String> {
    match v.as_deref() {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!(
            "a {} exercise needs a non-empty `{field}`",
            kind.as_str()
        )),
    }
}

fn forbid<T>(kind: ExerciseKind, field: &str, present: Option<T>) -> Result<(), String> {
    match present {
        Some(_) => Err(format!(
            "`{field}` does not apply to a {} exercise",
            kind.as_str()
        )),
        None => Ok(()),
    }
}

fn some_if(cond: bool) -> Option<()> {
    cond.then_some(())
}

impl CourseFile {
    pub fn validate(&self) -> Result<(), String> {
        non_blank("title", &self.title)
    }
}

impl ChapterFile {
    pub fn validate(&self) -> Result<(), String> {
        non_blank("title", &self.title)?;
        for (i, block) in self.blocks.iter().enumerate() {
            non_blank(&format!("blocks[{i}].body"), &block.body)?;
            match (block.kind, &block.language) {
                (BlockKind::Code, Some(lang)) if lang == "python" || lang == "sql" => {}
                (BlockKind::Code, _) => {
                    return Err(format!(
                        "blocks[{i}]: a code block needs `language` = \"python\" or \"sql\""
                    ));
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "blocks[{i}]: `language` only applies to code blocks"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl ExerciseFile {
    /// Checks the fields that apply to the exercise's type. Running the tests and queries is the
    /// content test's job (and, for SQL, start-up's: it computes each expected result).
    pub fn validate(&self) -> Result<(), String> {
        let kind = self.kind;
        non_blank("title", &self.title)?;
        non_blank("statement", &self.statement)?;
        if !(0..=100).contains(&self.xp_reward) {
            return Err(format!(
                "`xp_reward` must be 0..=100, not {}",
                self.xp_reward
            ));
        }
        if !(1..=3).contains(&self.difficulty) {
            return Err(format!(
                "`difficulty` must be 1, 2 or 3, not {}",
                self.difficulty
            ));
        }
        for (i, hint) in self.hints.iter().enumerate() {
            non_blank(&format!("hints[{i}].text"), &hint.text)?;
            if !(0..=50).contains(&hint.xp_cost) {
                return Err(format!(
                    "hints[{i}].xp_cost must be 0..=50, not {}",
                    hint.xp_cost
                ));
            }
        }
        let known = [
            ("wrong_answers", &self.wrong_answers),
            ("alternatives", &self.alternatives),
        ];
        for (field, answers) in known {
            if !answers.is_empty() && !matches!(kind, ExerciseKind::Python | ExerciseKind::Sql) {
                return Err(format!(
                    "`{field}` does not apply to a {} exercise",
                    kind.as_str()
                ));
            }
            for (i, a) in answers.iter().enumerate() {
                non_blank(&format!("{field}[{i}].why"), &a.why)?;
                non_blank(&format!("{field}[{i}].code"), &a.code)?;
            }
        }
        let has_tests = some_if(!self.tests.is_empty());
        let has_choices = some_if(!self.choices.is_empty());
        match kind {
            ExerciseKind::Python | ExerciseKind::Parsons => {
                require(kind, "solution", &self.solution)?;
                if self.tests.is_empty() {
                    return Err(format!(
                        "a {} exercise needs at least one [[tests]]",
                        kind.as_str()
                    ));
                }
                for (i, t) in self.tests.iter().enumerate() {
                    non_blank(&format!("tests[{i}].name"), &t.name)?;
                    non_blank(&format!("tests[{i}].code"), &t.code)?;
                }
                if kind == ExerciseKind::Python {
                    require(kind, "starter_code", &self.starter_code)?;
                } else {
                    forbid(kind, "starter_code", self.starter_code.as_ref())?;
                    let lines = parsons_lines(self.solution.as_deref().unwrap_or_default());
                    if lines.len() < 3 {
                        return Err(
                            "a parsons exercise needs at least 3 non-blank lines in `solution`"
                                .into(),
                        );
                    }
                    let distinct: std::collections::HashSet<&String> = lines.iter().collect();
                    if distinct.len() < lines.len() {
                        return Err("a parsons `solution` must not have two identical lines: \
                                    the student could not tell them apart"
                            .into());
                    }
                }
                forbid(kind, "schema", self.schema.as_ref())?;
                forbid(kind, "data", self.data.as_ref())?;
                forbid(kind, "order_matters", self.order_matters)?;
                forbid(kind, "check_query", self.check_query.as_ref())?;
                forbid(kind, "choices", has_choices)?;
                forbid(kind, "explanation", self.explanation.as_ref())?;
            }
            ExerciseKind::Sql => {
                if let Some(q) = &self.check_query {
                    non_blank("check_query", q)?;
                }
                require(kind, "schema", &self.schema)?;
                require(kind, "data", &self.data)?;
                require(kind, "solution", &self.solution)?;
                forbid(kind, "tests", has_tests)?;
                forbid(kind, "choices", has_choices)?;
                forbid(kind, "explanation", self.explanation.as_ref())?;
            }
            ExerciseKind::Mcq => {
                if self.choices.len() < 3 {
                    return Err("an mcq exercise needs at least 3 [[choices]]".into());
                }
                if !self.choices.iter().any(|c| c.correct) {
                    return Err(
                        "an mcq exercise needs at least one choice with correct = true".into(),
                    );
                }
                for (i, c) in self.choices.iter().enumerate() {
                    non_blank(&format!("choices[{i}].text"), &c.text)?;
                }
                require(kind, "explanation", &self.explanation)?;
                forbid(kind, "starter_code", self.starter_code.as_ref())?;
                forbid(kind, "solution", self.solution.as_ref())?;
                forbid(kind, "tests", has_tests)?;
                forbid(kind, "schema", self.schema.as_ref())?;
                forbid(kind, "data", self.data.as_ref())?;
                forbid(kind, "order_matters", self.order_matters)?;
                forbid(kind, "check_query", self.check_query.as_ref())?;
            }
        }
        Ok(())
    }
}

/// The id of an MCQ choice as served: `c0`, `c1`… in the file's order.
pub fn choice_id(index: usize) -> String {
    format!("c{index}")
}

/// Checks what spans files: slugs unique across the whole catalogue, at least one course.
pub fn validate_catalogue(courses: &[CourseSpec]) -> Result<(), String> {
    if courses.is_empty() {
        return Err("the catalogue has no course".into());
    }
    let mut course_slugs = HashSet::new();
    let mut chapter_slugs = HashSet::new();
    let mut exercise_slugs = HashSet::new();
    for course in courses {
        if !course_slugs.insert(course.slug.as_str()) {
            return Err(format!("course slug {:?} is used twice", course.slug));
        }
        for chapter in &course.chapters {
            if !chapter_slugs.insert(chapter.slug.as_str()) {
                return Err(format!(
                    "chapter slug {:?} is used twice (chapter slugs are unique across courses)",
                    chapter.slug
                ));
            }
            for ex in &chapter.exercises {
                if !exercise_slugs.insert(ex.slug.as_str()) {
                    return Err(format!(
                        "exercise slug {:?} is used twice (exercise slugs are unique across the catalogue)",
                        ex.slug
                    ));
                }
            }
        }
    }
    Ok(())
}
