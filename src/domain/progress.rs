//! A student's progress as the `StudentActor` holds it hot: per exercise, XP, badges,
//! achievements, streak and hints used. Loaded once from the database, then changed only by the
//! rules (`domain::rules`) after the database has committed the change.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{Datelike, TimeZone};
use serde::{Deserialize, Serialize};

use super::ids::{ExerciseId, HintId, UserId};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExerciseProgress {
    pub attempts: i32,
    pub failed_attempts: i32,
    pub best_score: i32,
    pub passed: bool,
    pub first_passed_at: Option<i64>,
    pub last_attempt_at: i64,
}

/// XP badges, in the order they are reached. The portal's names, which its users know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Badge {
    Beginner,
    Explorer,
    Scholar,
    Expert,
    Master,
    Legend,
}

impl Badge {
    pub const ALL: [Badge; 6] = [
        Badge::Beginner,
        Badge::Explorer,
        Badge::Scholar,
        Badge::Expert,
        Badge::Master,
        Badge::Legend,
    ];

    /// XP needed to earn the badge.
    pub fn threshold(self) -> i64 {
        match self {
            Badge::Beginner => 0,
            Badge::Explorer => 100,
            Badge::Scholar => 500,
            Badge::Expert => 1000,
            Badge::Master => 2000,
            Badge::Legend => 5000,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Badge::Beginner => "BEGINNER",
            Badge::Explorer => "EXPLORER",
            Badge::Scholar => "SCHOLAR",
            Badge::Expert => "EXPERT",
            Badge::Master => "MASTER",
            Badge::Legend => "LEGEND",
        }
    }

    pub fn from_code(code: &str) -> Option<Badge> {
        Badge::ALL.into_iter().find(|b| b.code() == code)
    }

    /// The French name shown to students.
    pub fn title(self) -> &'static str {
        match self {
            Badge::Beginner => "Débutant",
            Badge::Explorer => "Explorateur",
            Badge::Scholar => "Érudit",
            Badge::Expert => "Expert",
            Badge::Master => "Maître",
            Badge::Legend => "Légende",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Achievement {
    FirstExercise,
    TenExercises,
    PerfectScore,
    WeekStreak,
}

impl Achievement {
    pub const ALL: [Achievement; 4] = [
        Achievement::FirstExercise,
        Achievement::TenExercises,
        Achievement::PerfectScore,
        Achievement::WeekStreak,
    ];

    pub fn xp_bonus(self) -> i64 {
        match self {
            Achievement::FirstExercise => 50,
            Achievement::TenExercises => 100,
            Achievement::PerfectScore => 75,
            Achievement::WeekStreak => 150,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Achievement::FirstExercise => "FIRST_EXERCISE",
            Achievement::TenExercises => "TEN_EXERCISES",
            Achievement::PerfectScore => "PERFECT_SCORE",
            Achievement::WeekStreak => "WEEK_STREAK",
        }
    }

    pub fn from_code(code: &str) -> Option<Achievement> {
        Achievement::ALL.into_iter().find(|a| a.code() == code)
    }

    pub fn title(self) -> &'static str {
        match self {
            Achievement::FirstExercise => "Premier exercice réussi",
            Achievement::TenExercises => "Dix exercices réussis",
            Achievement::PerfectScore => "Score parfait",
            Achievement::WeekStreak => "Une semaine sans interruption",
        }
    }
}

/// Consecutive days (Europe/Paris calendar) with at least one passed attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Streak {
    pub current: i32,
    pub longest: i32,
    /// Day number of the last passed attempt (see [`paris_day`]).
    pub last_pass_day: Option<i32>,
}

impl Streak {
    /// The streak as it stands on `today`: a run that was not continued yesterday or today is over.
    pub fn current_on(&self, today: i32) -> i32 {
        match self.last_pass_day {
            Some(last) if today - last <= 1 => self.current,
            _ => 0,
        }
    }
}

/// Everything the rules need about one student.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentProgress {
    pub student_id: UserId,
    pub exercises: HashMap<ExerciseId, ExerciseProgress>,
    pub xp: i64,
    pub badges: BTreeSet<Badge>,
    pub achievements: BTreeSet<Achievement>,
    pub streak: Streak,
    pub hints_used: HashSet<HintId>,
}

/// Level from XP: 100 XP per level, starting at level 1.
pub fn level_for(xp: i64) -> i64 {
    xp.max(0) / 100 + 1
}

impl StudentProgress {
    pub fn new(student_id: UserId) -> Self {
        StudentProgress {
            student_id,
            exercises: HashMap::new(),
            xp: 0,
            badges: BTreeSet::new(),
            achievements: BTreeSet::new(),
            streak: Streak::default(),
            hints_used: HashSet::new(),
        }
    }

    pub fn level(&self) -> i64 {
        level_for(self.xp)
    }

    pub fn passed_count(&self) -> usize {
        self.exercises.values().filter(|p| p.passed).count()
    }
}

/// Days since 1970-01-01 on the Europe/Paris calendar for a Unix time in milliseconds: two passes
/// either side of midnight in Paris count as two days, whatever the server's time zone.
pub fn paris_day(at_ms: i64) -> i32 {
    let paris = chrono_tz::Europe::Paris;
    match paris.timestamp_millis_opt(at_ms) {
        chrono::LocalResult::Single(t) => {
            t.date_naive().num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
        }
        // A Unix timestamp maps to exactly one instant; this is only for out-of-range values.
        _ => (at_ms.div_euclid(86_400_000)) as i32,
    }
}

/// `NaiveDate::from_ymd(1970, 1, 1).num_days_from_ce()`.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_for(0), 1);
        assert_eq!(level_for(99), 1);
        assert_eq!(level_for(100), 2);
        assert_eq!(level_for(2050), 21);
        assert_eq!(level_for(-5), 1);
    }

    #[test]
    fn paris_days_follow_paris_midnight() {
        // 2026-11-24 22:59:59 UTC = 23:59:59 in Paris (UTC+1 in winter); one second later is the
        // next day in Paris though still the 24th in UTC.
        let before = 1_795_561_199_000; // 2026-11-24T22:59:59Z
        let after = before + 1_000;
        assert_eq!(paris_day(after) - paris_day(before), 1);
        // In summer Paris is UTC+2: 21:59:59Z and 22:00:00Z straddle midnight.
        let summer_before = 1_782_597_599_000; // 2026-06-27T21:59:59Z
        assert_eq!(
            paris_day(summer_before + 1_000) - paris_day(summer_before),
            1
        );
        assert_eq!(paris_day(0), 0); // 1970-01-01 01:00 in Paris
    }

    #[test]
    fn badge_and_achievement_codes_round_trip() {
        for b in Badge::ALL {
            assert_eq!(Badge::from_code(b.code()), Some(b));
        }
        for a in Achievement::ALL {
            assert_eq!(Achievement::from_code(a.code()), Some(a));
        }
        assert_eq!(Badge::from_code("NOPE"), None);
    }

    #[test]
    fn a_streak_not_continued_is_over() {
        let s = Streak {
            current: 4,
            longest: 6,
            last_pass_day: Some(100),
        };
        assert_eq!(s.current_on(100), 4);
        assert_eq!(s.current_on(101), 4);
        assert_eq!(s.current_on(102), 0);
    }
}
