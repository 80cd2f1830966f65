//! Reads the course catalogue from `content/` (see content/README.md for the format). Any bad
//! file stops start-up with its path and what is wrong.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use crate::domain::catalogue::{
    ChapterFile, ChapterSpec, CourseFile, CourseSpec, ExerciseFile, ExerciseSpec,
    split_ordered_name, validate_catalogue,
};

/// Loads and validates every course under `dir`.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<CourseSpec>> {
    if !dir.is_dir() {
        bail!(
            "content directory {} not found (set content.dir or NSI__CONTENT__DIR)",
            dir.display()
        );
    }
    let mut courses = Vec::new();
    for course_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        courses.push(load_course(&course_dir)?);
    }
    validate_catalogue(&courses).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    Ok(courses)
}

fn load_course(dir: &Path) -> anyhow::Result<CourseSpec> {
    let (position, slug) = ordered_name(dir)?;
    let file: CourseFile = read_toml(&dir.join("course.toml"))?;
    file.validate()
        .map_err(|e| anyhow!("{}: {e}", dir.join("course.toml").display()))?;
    let mut chapters = Vec::new();
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            chapters.push(load_chapter(&path)?);
        } else if path.file_name().is_some_and(|n| n != "course.toml") && is_toml(&path) {
            bail!(
                "{}: unexpected file (a course folder holds course.toml and chapter folders)",
                path.display()
            );
        }
    }
    Ok(CourseSpec {
        slug,
        position,
        file,
        chapters,
    })
}

fn load_chapter(dir: &Path) -> anyhow::Result<ChapterSpec> {
    let (position, slug) = ordered_name(dir)?;
    let chapter_toml = dir.join("chapter.toml");
    let file: ChapterFile = read_toml(&chapter_toml)?;
    file.validate()
        .map_err(|e| anyhow!("{}: {e}", chapter_toml.display()))?;
    let mut exercises = Vec::new();
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            bail!("{}: unexpected folder inside a chapter", path.display());
        }
        if !is_toml(&path) || path.file_name().is_some_and(|n| n == "chapter.toml") {
            continue;
        }
        let (position, slug) = ordered_name(&path)?;
        let file: ExerciseFile = read_toml(&path)?;
        file.validate()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        exercises.push(ExerciseSpec {
            slug,
            position,
            file,
        });
    }
    Ok(ChapterSpec {
        slug,
        position,
        file,
        exercises,
    })
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

fn ordered_name(path: &Path) -> anyhow::Result<(i32, String)> {
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    }
    .and_then(|s| s.to_str())
    .ok_or_else(|| anyhow!("{}: the name is not valid UTF-8", path.display()))?;
    split_ordered_name(stem).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Directory entries sorted by name, hidden files and README/Markdown files skipped.
fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let path = entry
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        entries.push(path);
    }
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn minimal(root: &Path) {
        write(
            root,
            "01-c/course.toml",
            "title = \"C\"\nlevel = \"snt\"\ndescription = \"d\"\n",
        );
        write(root, "01-c/01-ch/chapter.toml", "title = \"Ch\"\n");
        write(
            root,
            "01-c/01-ch/01-ex.toml",
            "title = \"E\"\ntype = \"mcq\"\nxp_reward = 5\nstatement = \"?\"\nexplanation = \"e\"\n\
             [[choices]]\ntext = \"a\"\ncorrect = true\n[[choices]]\ntext = \"b\"\ncorrect = false\n\
             [[choices]]\ntext = \"c\"\ncorrect = false\n",
        );
    }

    #[test]
    fn loads_a_minimal_tree() {
        let dir = tempfile::tempdir().unwrap();
        minimal(dir.path());
        let courses = load_dir(dir.path()).unwrap();
        assert_eq!(courses.len(), 1);
        assert_eq!(courses[0].slug, "c");
        assert_eq!(courses[0].chapters[0].exercises[0].slug, "ex");
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        minimal(dir.path());
        write(
            dir.path(),
            "01-c/01-ch/02-bad.toml",
            "title = \"E\"\ntype = \"rust\"\n",
        );
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(err.contains("02-bad.toml"), "{err}");
    }

    #[test]
    fn a_duplicate_exercise_slug_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        minimal(dir.path());
        let text = fs::read_to_string(dir.path().join("01-c/01-ch/01-ex.toml")).unwrap();
        write(dir.path(), "01-c/01-ch/02-ex.toml", &text);
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(err.contains("\"ex\" is used twice"), "{err}");
    }

    #[test]
    fn the_real_catalogue_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("content");
        let courses = load_dir(&dir).unwrap();
        let exercises: usize = courses
            .iter()
            .flat_map(|c| &c.chapters)
            .map(|ch| ch.exercises.len())
            .sum();
        assert!(courses.len() >= 3, "{} courses", courses.len());
        assert!(exercises >= 40, "{exercises} exercises");
    }
}
