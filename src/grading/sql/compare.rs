//! Compares a student's result table with the expected one and says, in French, the first check
//! that failed. The rule (content/README.md): columns are compared by position — the statement
//! names them and their order — and their names are not (an alias or `COUNT(*)` spelt otherwise
//! is fine); rows in any order unless the exercise sets `order_matters`; numbers by value
//! (`2` equals `2.0`, reals within a relative 1e-9), text exactly.

use std::cmp::Ordering;

use serde_json::Value;

use crate::domain::catalogue::ResultTable;

/// `None` when the result is right, else what is wrong.
pub fn compare(expected: &ResultTable, got: &ResultTable, order_matters: bool) -> Option<String> {
    let (want_cols, got_cols) = (expected.columns.len(), got.columns.len());
    if want_cols != got_cols {
        return Some(format!(
            "{} attendue{}, {} obtenue{} (attendu : {}).",
            plural(want_cols, "colonne"),
            s(want_cols),
            got_cols,
            s(got_cols),
            expected.columns.join(", ")
        ));
    }
    let (want_rows, got_rows) = (expected.rows.len(), got.rows.len());
    if same_names_other_order(&expected.columns, &got.columns) {
        return Some(format!(
            "Les colonnes ne sont pas dans l'ordre demandé (attendu : {}).",
            expected.columns.join(", ")
        ));
    }
    if want_rows != got_rows {
        return Some(format!(
            "{} attendue{}, {} obtenue{}.",
            plural(want_rows, "ligne"),
            s(want_rows),
            got_rows,
            s(got_rows)
        ));
    }
    if order_matters {
        for (i, (w, g)) in expected.rows.iter().zip(&got.rows).enumerate() {
            if !same_row(w, g) {
                let hint = if same_multiset(&expected.rows, &got.rows) {
                    " Les lignes sont les bonnes, mais pas dans l'ordre demandé."
                } else {
                    ""
                };
                return Some(format!(
                    "Ligne {} : attendu {}, obtenu {}.{hint}",
                    i + 1,
                    show_row(w),
                    show_row(g)
                ));
            }
        }
        return None;
    }
    let mut want: Vec<&Vec<Value>> = expected.rows.iter().collect();
    let mut have: Vec<&Vec<Value>> = got.rows.iter().collect();
    want.sort_by(|a, b| cmp_row(a, b));
    have.sort_by(|a, b| cmp_row(a, b));
    for (w, g) in want.iter().zip(&have) {
        if !same_row(w, g) {
            // The first expected row (in sorted order) that the result lacks.
            let missing = want
                .iter()
                .find(|w| !have.iter().any(|g| same_row(w, g)))
                .unwrap_or(w);
            return Some(format!(
                "La ligne {} est attendue mais absente du résultat.",
                show_row(missing)
            ));
        }
    }
    None
}

fn s(n: usize) -> &'static str {
    if n > 1 { "s" } else { "" }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", s(n))
}

fn same_names_other_order(want: &[String], got: &[String]) -> bool {
    let norm = |v: &[String]| -> Vec<String> { v.iter().map(|c| c.to_lowercase()).collect() };
    let (w, g) = (norm(want), norm(got));
    if w == g {
        return false;
    }
    let (mut ws, mut gs) = (w.clone(), g.clone());
    ws.sort();
    gs.sort();
    ws == gs
}

fn same_multiset(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    let mut a: Vec<&Vec<Value>> = a.iter().collect();
    let mut b: Vec<&Vec<Value>> = b.iter().collect();
    a.sort_by(|x, y| cmp_row(x, y));
    b.sort_by(|x, y| cmp_row(x, y));
    a.iter().zip(&b).all(|(x, y)| same_row(x, y))
}

fn same_row(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
            }
        },
        _ => a == b,
    }
}

/// A total order on rows for the unordered comparison: NULL < numbers < text; numbers by value.
/// Reals a hair apart sort next to each other, so the pairwise check after sorting still matches.
fn cmp_row(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp_value(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Number(_) => 1,
            _ => 2,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if same_value(a, b) {
                Ordering::Equal
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// `('Léa', 16, NULL)`, as SQL would write the values, shortened past 120 characters.
fn show_row(row: &[Value]) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|v| match v {
            Value::Null => "NULL".to_owned(),
            Value::String(t) => format!("'{}'", t.replace('\'', "''")),
            other => other.to_string(),
        })
        .collect();
    let text = format!("({})", cells.join(", "));
    if text.chars().count() > 120 {
        let short: String = text.chars().take(117).collect();
        format!("{short}…)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(columns: &[&str], rows: Value) -> ResultTable {
        ResultTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: serde_json::from_value(rows).unwrap(),
        }
    }

    #[test]
    fn equal_tables_pass_and_names_do_not_matter() {
        let want = table(&["nom", "n"], json!([["a", 1], ["b", 2]]));
        let got = table(&["nom", "COUNT(*)"], json!([["b", 2.0], ["a", 1]]));
        assert_eq!(compare(&want, &got, false), None);
        assert!(
            compare(&want, &got, true)
                .unwrap()
                .contains("pas dans l'ordre demandé")
        );
    }

    #[test]
    fn says_which_check_failed() {
        let want = table(&["nom", "age"], json!([["a", 1], ["b", 2], ["c", 3]]));
        let more = table(
            &["nom", "age"],
            json!([["a", 1], ["b", 2], ["c", 3], ["d", 4], ["e", 5]]),
        );
        assert_eq!(
            compare(&want, &more, false).unwrap(),
            "3 lignes attendues, 5 obtenues."
        );
        let swapped = table(&["age", "nom"], json!([[1, "a"], [2, "b"], [3, "c"]]));
        assert!(
            compare(&want, &swapped, false)
                .unwrap()
                .contains("ordre demandé (attendu : nom, age)")
        );
        let narrow = table(&["nom"], json!([["a"], ["b"], ["c"]]));
        assert_eq!(
            compare(&want, &narrow, false).unwrap(),
            "2 colonnes attendues, 1 obtenue (attendu : nom, age)."
        );
        let wrong = table(&["nom", "age"], json!([["a", 1], ["b", 2], ["c", 4]]));
        assert_eq!(
            compare(&want, &wrong, false).unwrap(),
            "La ligne ('c', 3) est attendue mais absente du résultat."
        );
        assert_eq!(
            compare(&want, &wrong, true).unwrap(),
            "Ligne 3 : attendu ('c', 3), obtenu ('c', 4)."
        );
    }

    #[test]
    fn reals_compare_by_value() {
        let want = table(&["m"], json!([[12.5], [0.1]]));
        let got = table(&["m"], json!([[0.30000000000000004 - 0.2], [12.5]]));
        assert_eq!(compare(&want, &got, false), None);
        let off = table(&["m"], json!([[0.2], [12.5]]));
        assert!(compare(&want, &off, false).is_some());
        let text = table(&["m"], json!([["0.1"], [12.5]]));
        assert!(compare(&want, &text, false).is_some());
    }
}
