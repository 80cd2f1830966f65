//! Parsons exercises as served: line ids that reveal nothing of the order, indentation levels,
//! and the fixed shuffle every student sees.

use std::collections::HashSet;

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
