//! The course catalogue: what content files say (`*Spec`, validated here) and the in-memory
//! catalogue served to browsers once the specs have ids from the database (`Catalogue`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{ChapterId, CourseId, ExerciseId, HintId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Snt,
    Premiere,
    Terminale,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Snt => "snt",
            Level::Premiere => "premiere",
            Level::Terminale => "terminale",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseKind {
    Python,
    Sql,
    Mcq,
    Parsons,
}

impl ExerciseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExerciseKind::Python => "python",
            ExerciseKind::Sql => "sql",
            ExerciseKind::Mcq => "mcq",
            ExerciseKind::Parsons => "parsons",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Text,
    Code,
    Tip,
    Warning,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Text => "text",
            BlockKind::Code => "code",
            BlockKind::Tip => "tip",
            BlockKind::Warning => "warning",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the files say.
// ---------------------------------------------------------------------------------------------

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

/// The non-blank lines of a Parsons solution, indentation kept.
pub fn parsons_lines(solution: &str) -> Vec<String> {
    solution
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// One line of a Parsons exercise: its id (6 hex characters from a hash of the slug and its place
/// in the solution, so that ids reveal nothing of the order), its text without the leading
/// indentation, and its indentation level in the solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsonsLine {
    pub id: String,
    pub text: String,
    pub indent: usize,
}

/// The solution's lines with their ids and indentation levels (one level: the smallest
/// indentation the solution uses, usually 4 spaces; a tab counts 4).
pub fn parsons_items(slug: &str, solution: &str) -> Vec<ParsonsLine> {
    use sha2::{Digest, Sha256};
    let lines = parsons_lines(solution);
    let width = |l: &str| -> usize {
        l.chars()
            .take_while(|c| c.is_whitespace())
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum()
    };
    let unit = lines
        .iter()
        .map(|l| width(l))
        .filter(|w| *w > 0)
        .min()
        .unwrap_or(4);
    let mut ids = HashSet::new();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // A clash between two 6-hex ids of one exercise is ~1e-6; salt again until unique.
            let mut salt = 0u32;
            let id = loop {
                let digest = Sha256::digest(format!("{slug}:{i}:{salt}").as_bytes());
                let id = format!("{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2]);
                if ids.insert(id.clone()) {
                    break id;
                }
                salt += 1;
            };
            ParsonsLine {
                id,
                text: l.trim_start().to_owned(),
                indent: (width(l) + unit / 2) / unit,
            }
        })
        .collect()
}

/// The order in which a Parsons exercise's lines are shown: a fixed shuffle (seeded by the slug,
/// so every student and every instance sees the same) that is never the solution's own order.
pub fn parsons_shuffle(slug: &str, lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.to_vec();
    if out.len() < 2 {
        return out;
    }
    // FNV-1a of the slug seeds a xorshift generator; Fisher–Yates with it.
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in slug.bytes() {
        state ^= u64::from(b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in (1..out.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    if out == lines {
        out.rotate_left(1);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The catalogue as served: ids from the database, everything in memory.
// ---------------------------------------------------------------------------------------------

/// A query's result table, as the browser compares it: column names and rows of JSON scalars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug)]
pub struct Catalogue {
    pub courses: Vec<Arc<Course>>,
    chapters_by_slug: HashMap<String, Arc<Chapter>>,
    exercises_by_id: HashMap<ExerciseId, Arc<Exercise>>,
    hints_by_id: HashMap<HintId, (ExerciseId, usize)>,
}

#[derive(Debug)]
pub struct Course {
    pub id: CourseId,
    pub slug: String,
    pub title: String,
    pub level: Level,
    pub description: String,
    pub chapters: Vec<Arc<Chapter>>,
}

#[derive(Debug)]
pub struct Chapter {
    pub id: ChapterId,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub course_slug: String,
    pub course_title: String,
    pub blocks: Vec<Block>,
    pub exercises: Vec<Arc<Exercise>>,
}

#[derive(Debug)]
pub struct Exercise {
    pub id: ExerciseId,
    pub slug: String,
    pub title: String,
    pub kind: ExerciseKind,
    pub xp_reward: i32,
    pub difficulty: i32,
    pub statement: String,
    pub chapter_id: ChapterId,
    pub chapter_slug: String,
    pub chapter_title: String,
    pub course_slug: String,
    pub course_title: String,
    pub hints: Vec<Hint>,
    pub body: ExerciseBody,
}

#[derive(Debug)]
pub struct Hint {
    pub id: HintId,
    pub position: i32,
    pub text: String,
    pub xp_cost: i32,
}

/// What each type needs to be shown and checked. Reference solutions stay server-side: the
/// public view (`http::catalogue`) never serialises `solution` or `correct`.
#[derive(Debug)]
pub enum ExerciseBody {
    Python {
        starter_code: String,
        tests: Vec<TestCase>,
        solution: String,
    },
    Parsons {
        /// The solution's lines, in the solution's order.
        lines: Vec<ParsonsLine>,
        /// The order they are shown in (indexes into `lines`): a fixed shuffle.
        shown: Vec<usize>,
        /// Whether indentation is part of the answer (the solution indents some line).
        indented: bool,
        tests: Vec<TestCase>,
        solution: String,
    },
    Sql {
        schema: String,
        data: String,
        starter_code: String,
        order_matters: bool,
        /// For a data-changing exercise: the query run after the statements (see content/README.md).
        check_query: Option<String>,
        /// The reference query's result on the data (or `check_query`'s after `solution`): what
        /// the student's answer must give.
        expected: ResultTable,
        solution: String,
    },
    Mcq {
        choices: Vec<Choice>,
        explanation: String,
    },
}

/// The ids the database gave to the specs' slugs.
#[derive(Debug, Default, Clone)]
pub struct CatalogueIds {
    pub courses: HashMap<String, CourseId>,
    pub chapters: HashMap<String, ChapterId>,
    pub exercises: HashMap<String, ExerciseId>,
    /// (exercise slug, hint position starting at 1) → id.
    pub hints: HashMap<(String, i32), HintId>,
}

impl Catalogue {
    /// Builds the served catalogue. `sql_expected` holds each SQL exercise's expected result by
    /// slug (computed by running its reference query).
    pub fn build(
        specs: &[CourseSpec],
        ids: &CatalogueIds,
        sql_expected: &HashMap<String, ResultTable>,
    ) -> Result<Catalogue, String> {
        let missing = |what: &str, slug: &str| format!("no id for {what} {slug:?}");
        let mut courses = Vec::new();
        let mut chapters_by_slug = HashMap::new();
        let mut exercises_by_id = HashMap::new();
        let mut hints_by_id = HashMap::new();
        for cs in specs {
            let mut chapters = Vec::new();
            for ch in &cs.chapters {
                let chapter_id = *ids
                    .chapters
                    .get(&ch.slug)
                    .ok_or_else(|| missing("chapter", &ch.slug))?;
                let mut exercises = Vec::new();
                for es in &ch.exercises {
                    let id = *ids
                        .exercises
                        .get(&es.slug)
                        .ok_or_else(|| missing("exercise", &es.slug))?;
                    let f = &es.file;
                    let mut hints = Vec::new();
                    for (i, h) in f.hints.iter().enumerate() {
                        let position = i as i32 + 1;
                        let hint_id = *ids
                            .hints
                            .get(&(es.slug.clone(), position))
                            .ok_or_else(|| missing("hint of", &es.slug))?;
                        hints_by_id.insert(hint_id, (id, i));
                        hints.push(Hint {
                            id: hint_id,
                            position,
                            text: h.text.clone(),
                            xp_cost: h.xp_cost,
                        });
                    }
                    let solution = f.solution.clone().unwrap_or_default();
                    let body = match f.kind {
                        ExerciseKind::Python => ExerciseBody::Python {
                            starter_code: f.starter_code.clone().unwrap_or_default(),
                            tests: f.tests.clone(),
                            solution,
                        },
                        ExerciseKind::Parsons => {
                            let lines = parsons_items(&es.slug, &solution);
                            let order: Vec<String> =
                                (0..lines.len()).map(|i| i.to_string()).collect();
                            let shown = parsons_shuffle(&es.slug, &order)
                                .iter()
                                .filter_map(|i| i.parse().ok())
                                .collect();
                            ExerciseBody::Parsons {
                                indented: lines.iter().any(|l| l.indent > 0),
                                lines,
                                shown,
                                tests: f.tests.clone(),
                                solution,
                            }
                        }
                        ExerciseKind::Sql => ExerciseBody::Sql {
                            schema: f.schema.clone().unwrap_or_default(),
                            data: f.data.clone().unwrap_or_default(),
                            starter_code: f.starter_code.clone().unwrap_or_default(),
                            order_matters: f.order_matters.unwrap_or(false),
                            check_query: f.check_query.clone(),
                            expected: sql_expected
                                .get(&es.slug)
                                .cloned()
                                .ok_or_else(|| missing("expected result of", &es.slug))?,
                            solution,
                        },
                        ExerciseKind::Mcq => ExerciseBody::Mcq {
                            choices: f.choices.clone(),
                            explanation: f.explanation.clone().unwrap_or_default(),
                        },
                    };
                    let exercise = Arc::new(Exercise {
                        id,
                        slug: es.slug.clone(),
                        title: f.title.clone(),
                        kind: f.kind,
                        xp_reward: f.xp_reward,
                        difficulty: f.difficulty,
                        statement: f.statement.clone(),
                        chapter_id,
                        chapter_slug: ch.slug.clone(),
                        chapter_title: ch.file.title.clone(),
                        course_slug: cs.slug.clone(),
                        course_title: cs.file.title.clone(),
                        hints,
                        body,
                    });
                    exercises_by_id.insert(id, exercise.clone());
                    exercises.push(exercise);
                }
                let chapter = Arc::new(Chapter {
                    id: chapter_id,
                    slug: ch.slug.clone(),
                    title: ch.file.title.clone(),
                    description: ch.file.description.clone(),
                    course_slug: cs.slug.clone(),
                    course_title: cs.file.title.clone(),
                    blocks: ch.file.blocks.clone(),
                    exercises,
                });
                chapters_by_slug.insert(ch.slug.clone(), chapter.clone());
                chapters.push(chapter);
            }
            courses.push(Arc::new(Course {
                id: *ids
                    .courses
                    .get(&cs.slug)
                    .ok_or_else(|| missing("course", &cs.slug))?,
                slug: cs.slug.clone(),
                title: cs.file.title.clone(),
                level: cs.file.level,
                description: cs.file.description.clone(),
                chapters,
            }));
        }
        Ok(Catalogue {
            courses,
            chapters_by_slug,
            exercises_by_id,
            hints_by_id,
        })
    }

    pub fn chapter(&self, slug: &str) -> Option<&Arc<Chapter>> {
        self.chapters_by_slug.get(slug)
    }

    pub fn exercise(&self, id: ExerciseId) -> Option<&Arc<Exercise>> {
        self.exercises_by_id.get(&id)
    }

    /// A hint and the exercise it belongs to.
    pub fn hint(&self, id: HintId) -> Option<(&Arc<Exercise>, &Hint)> {
        let (exercise_id, index) = self.hints_by_id.get(&id)?;
        let exercise = self.exercises_by_id.get(exercise_id)?;
        Some((exercise, exercise.hints.get(*index)?))
    }

    pub fn exercises(&self) -> impl Iterator<Item = &Arc<Exercise>> {
        self.courses
            .iter()
            .flat_map(|c| c.chapters.iter())
            .flat_map(|ch| ch.exercises.iter())
    }

    pub fn exercise_count(&self) -> usize {
        self.exercises_by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_valid_slug("nsi-1-python-bases"));
        assert!(is_valid_slug("a1"));
        assert!(!is_valid_slug(""));
        assert!(!is_valid_slug("Bases"));
        assert!(!is_valid_slug("a--b"));
        assert!(!is_valid_slug("-a"));
        assert!(!is_valid_slug("a_b"));
        assert!(!is_valid_slug("é"));
        assert!(!is_valid_slug(&"a".repeat(65)));
    }

    #[test]
    fn ordered_names() {
        assert_eq!(
            split_ordered_name("03-boucles").unwrap(),
            (3, "boucles".to_owned())
        );
        assert_eq!(
            split_ordered_name("01-nsi-1-python-bases").unwrap(),
            (1, "nsi-1-python-bases".to_owned())
        );
        assert!(split_ordered_name("boucles").is_err());
        assert!(split_ordered_name("x1-boucles").is_err());
        assert!(split_ordered_name("01-Boucles").is_err());
    }

    #[test]
    fn parsons_shuffle_is_stable_and_never_the_solution() {
        let lines: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let s1 = parsons_shuffle("ex", &lines);
        assert_eq!(s1, parsons_shuffle("ex", &lines));
        assert_ne!(s1, lines);
        let mut sorted = s1.clone();
        sorted.sort();
        assert_eq!(sorted, lines);
        for slug in ["a", "b", "c", "dd", "eee", "parsons-1"] {
            assert_ne!(parsons_shuffle(slug, &lines[..2]), lines[..2].to_vec());
        }
    }

    fn python_exercise() -> ExerciseFile {
        toml::from_str(
            r#"
title = "Somme"
type = "python"
xp_reward = 10
statement = "Écrire somme."
starter_code = "def somme(l):\n    pass"
solution = "def somme(l):\n    return sum(l)"
[[tests]]
name = "vide"
code = "assert somme([]) == 0"
"#,
        )
        .unwrap()
    }

    #[test]
    fn python_exercise_validates() {
        python_exercise().validate().unwrap();
    }

    #[test]
    fn fields_that_do_not_apply_are_refused() {
        let mut e = python_exercise();
        e.schema = Some("CREATE TABLE t(x)".into());
        assert!(e.validate().unwrap_err().contains("schema"));
        let mut e = python_exercise();
        e.tests.clear();
        assert!(e.validate().unwrap_err().contains("tests"));
        let mut e = python_exercise();
        e.xp_reward = 500;
        assert!(e.validate().unwrap_err().contains("xp_reward"));
        let mut e = python_exercise();
        e.kind = ExerciseKind::Mcq;
        assert!(e.validate().is_err());
    }

    #[test]
    fn a_parsons_solution_needs_distinct_lines() {
        let mut e = python_exercise();
        e.kind = ExerciseKind::Parsons;
        e.starter_code = None;
        e.solution = Some("def f(n):\n    n = n + 1\n    return n\n".into());
        e.validate().unwrap();
        e.solution = Some("def f(n):\n    n = n + 1\n    n = n + 1\n    return n\n".into());
        assert!(e.validate().unwrap_err().contains("identical"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<ExerciseFile>(
            "title = \"x\"\ntype = \"python\"\nxp_reward = 1\nstatement = \"s\"\nsolutoin = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("solutoin"), "{err}");
    }

    #[test]
    fn code_blocks_need_a_language() {
        let ch = ChapterFile {
            title: "t".into(),
            description: String::new(),
            blocks: vec![Block {
                kind: BlockKind::Code,
                language: None,
                body: "x = 1".into(),
            }],
        };
        assert!(ch.validate().unwrap_err().contains("language"));
    }
}
