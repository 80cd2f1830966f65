//! Python: graded in the browser (Pyodide). The server checks that the per-test results name the
//! exercise's tests, in order, and derives the score from them: passed tests / tests × 100, passed
//! only when every test passed. Such an attempt is recorded as checked by the browser.

use serde::{Deserialize, Serialize};

use super::{CheckedBy, GradeError, Verdict};
use crate::domain::catalogue::TestCase;

/// What the server keeps of one test's output (the client truncates to the same size).
pub const MAX_OUTPUT_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonAnswer {
    pub code: String,
    pub tests: Vec<TestResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

pub fn grade(tests: &[TestCase], answer: &mut PythonAnswer) -> Result<Verdict, GradeError> {
    if answer.tests.len() != tests.len() {
        return Err(GradeError::invalid(format!(
            "Il faut le résultat de chacun des {} tests de l'exercice, dans l'ordre.",
            tests.len()
        )));
    }
    for (i, (result, test)) in answer.tests.iter_mut().zip(tests).enumerate() {
        if result.name != test.name {
            return Err(GradeError::invalid(format!(
                "Le test n° {} doit s'appeler {:?}.",
                i + 1,
                test.name
            )));
        }
        if let Some(out) = &mut result.output {
            truncate(out, MAX_OUTPUT_BYTES);
        }
    }
    let passed = answer.tests.iter().filter(|t| t.passed).count();
    let total = tests.len().max(1);
    let score = (passed * 100 / total) as i32;
    Ok(Verdict {
        passed: passed == tests.len(),
        score,
        checked_by: CheckedBy::Browser,
        feedback: Some(format!("{passed} test(s) réussi(s) sur {}.", tests.len())),
    })
}

/// The portal's `{"passed", "score"}` for a Python exercise: taken as the browser's word, within
/// reason (a score 0..=100, and no pass with a score of 0).
pub fn browser_verdict(passed: bool, score: i64) -> Result<Verdict, GradeError> {
    if !(0..=100).contains(&score) || (passed && score == 0) {
        return Err(GradeError::Invalid {
            code: "invalid_score",
            message: "Le score doit être un entier entre 0 et 100, et non nul pour une réussite."
                .into(),
        });
    }
    Ok(Verdict {
        passed,
        score: score as i32,
        checked_by: CheckedBy::Browser,
        feedback: None,
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<TestCase> {
        ["a", "b", "c"]
            .iter()
            .map(|n| TestCase {
                name: n.to_string(),
                code: "assert True".into(),
            })
            .collect()
    }

    fn answer(results: &[(&str, bool)]) -> PythonAnswer {
        PythonAnswer {
            code: "x = 1".into(),
            tests: results
                .iter()
                .map(|(n, p)| TestResult {
                    name: n.to_string(),
                    passed: *p,
                    output: Some("é".repeat(3000)),
                })
                .collect(),
        }
    }

    #[test]
    fn the_score_comes_from_the_results() {
        let mut all = answer(&[("a", true), ("b", true), ("c", true)]);
        let v = grade(&cases(), &mut all).unwrap();
        assert!(v.passed && v.score == 100 && v.checked_by == CheckedBy::Browser);
        let mut some = answer(&[("a", true), ("b", false), ("c", true)]);
        let v = grade(&cases(), &mut some).unwrap();
        assert!(!v.passed && v.score == 66, "{v:?}");
        assert!(some.tests[0].output.as_ref().unwrap().len() <= MAX_OUTPUT_BYTES);
        let mut none = answer(&[("a", false), ("b", false), ("c", false)]);
        let v = grade(&cases(), &mut none).unwrap();
        assert!(!v.passed && v.score == 0);
    }

    #[test]
    fn a_portal_verdict_needs_a_sane_score() {
        assert!(browser_verdict(true, 100).unwrap().passed);
        assert!(browser_verdict(true, 0).is_err());
        assert!(browser_verdict(false, 101).is_err());
        assert!(browser_verdict(false, -1).is_err());
        assert_eq!(browser_verdict(false, 40).unwrap().score, 40);
    }

    #[test]
    fn results_must_name_every_test_in_order() {
        assert!(grade(&cases(), &mut answer(&[("a", true), ("b", true)])).is_err());
        assert!(
            grade(
                &cases(),
                &mut answer(&[("a", true), ("c", true), ("b", true)])
            )
            .is_err()
        );
        assert!(grade(&cases(), &mut answer(&[])).is_err());
    }
}
