//! Parsons: right when the lines are in the solution's order, each at the solution's indentation
//! (when the exercise uses indentation). The content rule (content/README.md) is that every other
//! order fails a test, so no permuted order is accepted as equivalent.

use std::collections::HashSet;

use serde::Deserialize;

use super::mcq::short;
use super::{GradeError, Verdict};
use crate::domain::catalogue::ParsonsLine;

/// Deeper than any exercise needs; a bigger number is a client bug.
const MAX_INDENT: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParsonsAnswer {
    pub lines: Vec<PlacedLine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacedLine {
    pub id: String,
    #[serde(default)]
    pub indent: usize,
}

pub fn grade(
    lines: &[ParsonsLine],
    indented: bool,
    answer: &ParsonsAnswer,
) -> Result<Verdict, GradeError> {
    let mut seen = HashSet::new();
    let mut placed = Vec::with_capacity(answer.lines.len());
    for p in &answer.lines {
        let index = lines
            .iter()
            .position(|l| l.id == p.id)
            .ok_or_else(|| GradeError::invalid(format!("Ligne inconnue : {:?}.", short(&p.id))))?;
        if !seen.insert(index) {
            return Err(GradeError::invalid("Une même ligne est placée deux fois."));
        }
        if p.indent > MAX_INDENT {
            return Err(GradeError::invalid(format!(
                "L'indentation doit être comprise entre 0 et {MAX_INDENT} niveaux."
            )));
        }
        placed.push((index, p.indent));
    }
    if placed.len() < lines.len() {
        return Ok(Verdict::server(
            false,
            format!("Il reste {} ligne(s) à placer.", lines.len() - placed.len()),
        ));
    }
    if let Some(pos) = placed
        .iter()
        .enumerate()
        .position(|(i, (index, _))| *index != i)
    {
        return Ok(Verdict::server(
            false,
            format!("L'ordre n'est pas le bon à partir de la ligne {}.", pos + 1),
        ));
    }
    if indented
        && let Some(pos) = placed
            .iter()
            .position(|(index, indent)| lines[*index].indent != *indent)
    {
        return Ok(Verdict::server(
            false,
            format!(
                "L'ordre est bon, mais l'indentation de la ligne {} ne l'est pas.",
                pos + 1
            ),
        ));
    }
    Ok(Verdict::server(
        true,
        "Bravo, le programme est dans le bon ordre !",
    ))
}

/// The program the student built, as the teacher reads it (stored with the attempt).
pub fn program(lines: &[ParsonsLine], answer: &ParsonsAnswer) -> String {
    answer
        .lines
        .iter()
        .filter_map(|p| {
            let line = lines.iter().find(|l| l.id == p.id)?;
            Some(format!(
                "{}{}",
                "    ".repeat(p.indent.min(MAX_INDENT)),
                line.text
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::parsons_items;

    const SOLUTION: &str =
        "def f(n):\n    r = 1\n    for k in range(n):\n        r = r * 2\n    return r\n";

    fn answer(lines: &[ParsonsLine], order: &[(usize, usize)]) -> ParsonsAnswer {
        ParsonsAnswer {
            lines: order
                .iter()
                .map(|(i, indent)| PlacedLine {
                    id: lines[*i].id.clone(),
                    indent: *indent,
                })
                .collect(),
        }
    }

    #[test]
    fn items_have_levels_and_opaque_stable_ids() {
        let lines = parsons_items("ex", SOLUTION);
        let levels: Vec<usize> = lines.iter().map(|l| l.indent).collect();
        assert_eq!(levels, vec![0, 1, 1, 2, 1]);
        assert_eq!(lines[3].text, "r = r * 2");
        assert!(lines.iter().all(|l| l.id.len() == 6));
        assert_eq!(lines, parsons_items("ex", SOLUTION));
        assert_ne!(lines[0].id, parsons_items("other", SOLUTION)[0].id);
    }

    #[test]
    fn the_solution_order_and_indentation_pass() {
        let lines = parsons_items("ex", SOLUTION);
        let right = answer(&lines, &[(0, 0), (1, 1), (2, 1), (3, 2), (4, 1)]);
        let v = grade(&lines, true, &right).unwrap();
        assert!(v.passed && v.score == 100, "{v:?}");
        assert_eq!(program(&lines, &right), SOLUTION.trim_end());
    }

    #[test]
    fn another_order_or_indentation_fails() {
        let lines = parsons_items("ex", SOLUTION);
        let swapped = answer(&lines, &[(0, 0), (2, 1), (1, 1), (3, 2), (4, 1)]);
        let v = grade(&lines, true, &swapped).unwrap();
        assert!(!v.passed && v.score == 0);
        assert!(v.feedback.unwrap().contains("ligne 2"));
        let flat = answer(&lines, &[(0, 0), (1, 1), (2, 1), (3, 1), (4, 1)]);
        let v = grade(&lines, true, &flat).unwrap();
        assert!(!v.passed);
        assert!(v.feedback.unwrap().contains("indentation de la ligne 4"));
        // Without indentation in the answer, the order alone decides.
        assert!(grade(&lines, false, &flat).unwrap().passed);
        let short = answer(&lines, &[(0, 0), (1, 1)]);
        assert!(!grade(&lines, true, &short).unwrap().passed);
    }

    #[test]
    fn unknown_or_repeated_lines_are_invalid() {
        let lines = parsons_items("ex", SOLUTION);
        let twice = answer(&lines, &[(0, 0), (0, 0)]);
        assert!(grade(&lines, true, &twice).is_err());
        let unknown = ParsonsAnswer {
            lines: vec![PlacedLine {
                id: "zzzzzz".into(),
                indent: 0,
            }],
        };
        assert!(grade(&lines, true, &unknown).is_err());
        let deep = answer(&lines, &[(0, 99)]);
        assert!(grade(&lines, true, &deep).is_err());
    }
}
