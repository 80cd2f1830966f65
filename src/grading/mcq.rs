//! MCQ: right when the chosen ids are exactly the correct choices (all of them, nothing else).

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{GradeError, Verdict};
use crate::domain::catalogue::{Choice, choice_id};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McqAnswer {
    pub choices: Vec<String>,
}

pub fn grade(choices: &[Choice], answer: &McqAnswer) -> Result<Verdict, GradeError> {
    if answer.choices.is_empty() {
        return Err(GradeError::invalid("Choisissez au moins une réponse."));
    }
    let mut chosen = BTreeSet::new();
    for id in &answer.choices {
        let index = (0..choices.len())
            .find(|i| choice_id(*i) == *id)
            .ok_or_else(|| GradeError::invalid(format!("Choix inconnu : {:?}.", short(id))))?;
        if !chosen.insert(index) {
            return Err(GradeError::invalid("Un même choix est donné deux fois."));
        }
    }
    let correct: BTreeSet<usize> = (0..choices.len()).filter(|i| choices[*i].correct).collect();
    Ok(if chosen == correct {
        Verdict::server(true, "Bonne réponse !")
    } else if correct.len() > 1 && chosen.is_subset(&correct) {
        Verdict::server(false, "C'est incomplet : il y a d'autres bonnes réponses.")
    } else {
        Verdict::server(false, "Ce n'est pas la bonne réponse.")
    })
}

/// An id as echoed in a message: never more than 16 characters of what the client sent.
pub(super) fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(correct: &[bool]) -> Vec<Choice> {
        correct
            .iter()
            .enumerate()
            .map(|(i, c)| Choice {
                text: format!("choix {i}"),
                correct: *c,
            })
            .collect()
    }

    fn answer(ids: &[&str]) -> McqAnswer {
        McqAnswer {
            choices: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn exactly_the_correct_choices_pass() {
        let one = choices(&[false, true, false]);
        assert!(grade(&one, &answer(&["c1"])).unwrap().passed);
        assert_eq!(grade(&one, &answer(&["c1"])).unwrap().score, 100);
        let wrong = grade(&one, &answer(&["c0"])).unwrap();
        assert!(!wrong.passed);
        assert_eq!(wrong.score, 0);
        assert!(!grade(&one, &answer(&["c0", "c1"])).unwrap().passed);
        let two = choices(&[true, false, true]);
        assert!(grade(&two, &answer(&["c2", "c0"])).unwrap().passed);
        let partial = grade(&two, &answer(&["c0"])).unwrap();
        assert!(!partial.passed);
        assert!(partial.feedback.unwrap().contains("incomplet"));
    }

    #[test]
    fn unknown_duplicate_or_no_choice_is_invalid() {
        let one = choices(&[false, true, false]);
        for ids in [&["c3"][..], &["x"], &["c1", "c1"], &[]] {
            assert!(grade(&one, &answer(ids)).is_err(), "{ids:?}");
        }
    }
}
