//! The course catalogue: what content files say (`*Spec`, validated in files.rs; Parsons lines in
//! parsons.rs) and the in-memory catalogue served to browsers once the specs have ids from the
//! database (`Catalogue`).

use std::collections::HashMap;
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

mod files;
mod parsons;

pub use files::*;
pub use parsons::*;

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
