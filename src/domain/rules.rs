//! The portal's rules, as pure functions: what one attempt or one hint reveal changes for a
//! student. `evaluate_*` computes the change from the current state without touching it; the
//! actor applies it (`StudentProgress::apply_*`) only once the database has committed it.

use serde::Serialize;

use super::ids::{ExerciseId, HintId};
use super::progress::{
    Achievement, Badge, ExerciseProgress, Streak, StudentProgress, level_for, paris_day,
};

/// One submitted attempt, validated.
#[derive(Debug, Clone, Copy)]
pub struct AttemptInput {
    pub exercise_id: ExerciseId,
    pub xp_reward: i32,
    pub passed: bool,
    pub score: i32,
    pub at_ms: i64,
}

/// What one attempt changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptOutcome {
    pub exercise_id: ExerciseId,
    /// The exercise's progress after the attempt.
    pub progress: ExerciseProgress,
    pub first_pass: bool,
    /// All XP this attempt earned: the exercise's reward on a first pass plus achievement bonuses.
    pub xp_awarded: i64,
    pub xp_after: i64,
    pub level_before: i64,
    pub level_after: i64,
    pub new_badges: Vec<Badge>,
    pub new_achievements: Vec<Achievement>,
    pub streak: Streak,
}

pub fn evaluate_attempt(state: &StudentProgress, input: &AttemptInput) -> AttemptOutcome {
    let before = state
        .exercises
        .get(&input.exercise_id)
        .cloned()
        .unwrap_or_default();
    let first_pass = input.passed && !before.passed;
    let progress = ExerciseProgress {
        attempts: before.attempts + 1,
        failed_attempts: before.failed_attempts + i32::from(!input.passed),
        best_score: before.best_score.max(input.score),
        passed: before.passed || input.passed,
        first_passed_at: before.first_passed_at.or(first_pass.then_some(input.at_ms)),
        last_attempt_at: input.at_ms,
    };

    let mut xp = state.xp;
    if first_pass {
        xp += i64::from(input.xp_reward);
    }

    let streak = if input.passed {
        next_streak(state.streak, paris_day(input.at_ms))
    } else {
        state.streak
    };

    let passed_count = state.passed_count() + usize::from(first_pass);
    let earned = |a: Achievement| -> bool {
        match a {
            Achievement::FirstExercise => passed_count >= 1,
            Achievement::TenExercises => passed_count >= 10,
            Achievement::PerfectScore => input.passed && input.score == 100,
            Achievement::WeekStreak => streak.current >= 7,
        }
    };
    let new_achievements: Vec<Achievement> = Achievement::ALL
        .into_iter()
        .filter(|a| !state.achievements.contains(a) && earned(*a))
        .collect();
    xp += new_achievements.iter().map(|a| a.xp_bonus()).sum::<i64>();

    // Badges are judged on the XP after everything this submission earned.
    let new_badges: Vec<Badge> = Badge::ALL
        .into_iter()
        .filter(|b| !state.badges.contains(b) && xp >= b.threshold())
        .collect();

    AttemptOutcome {
        exercise_id: input.exercise_id,
        progress,
        first_pass,
        xp_awarded: xp - state.xp,
        xp_after: xp,
        level_before: state.level(),
        level_after: level_for(xp),
        new_badges,
        new_achievements,
        streak,
    }
}

/// The streak after a pass on `day`.
fn next_streak(s: Streak, day: i32) -> Streak {
    let current = match s.last_pass_day {
        Some(last) if day == last => s.current.max(1),
        Some(last) if day == last + 1 => s.current + 1,
        // An attempt stamped before the last pass (clock skew between instances): no change.
        Some(last) if day < last => return s,
        _ => 1,
    };
    Streak {
        current,
        longest: s.longest.max(current),
        last_pass_day: Some(day),
    }
}

/// What revealing a hint changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HintOutcome {
    pub hint_id: HintId,
    /// True when the student had revealed it before: it is free this time.
    pub already_revealed: bool,
    /// XP actually taken (the cost, or less when the student has less: XP never goes below 0).
    pub xp_spent: i64,
    pub xp_after: i64,
}

pub fn evaluate_hint(state: &StudentProgress, hint_id: HintId, xp_cost: i32) -> HintOutcome {
    if state.hints_used.contains(&hint_id) {
        return HintOutcome {
            hint_id,
            already_revealed: true,
            xp_spent: 0,
            xp_after: state.xp,
        };
    }
    let xp_after = (state.xp - i64::from(xp_cost.max(0))).max(0);
    HintOutcome {
        hint_id,
        already_revealed: false,
        xp_spent: state.xp - xp_after,
        xp_after,
    }
}

impl StudentProgress {
    /// Applies a committed attempt.
    pub fn apply_attempt(&mut self, o: &AttemptOutcome) {
        self.exercises.insert(o.exercise_id, o.progress.clone());
        self.xp = o.xp_after;
        self.badges.extend(o.new_badges.iter().copied());
        self.achievements.extend(o.new_achievements.iter().copied());
        self.streak = o.streak;
    }

    /// Applies a committed hint reveal.
    pub fn apply_hint(&mut self, o: &HintOutcome) {
        self.hints_used.insert(o.hint_id);
        self.xp = o.xp_after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    const DAY: i64 = 86_400_000;
    /// Noon in Paris on some winter day.
    const T0: i64 = 1_795_608_000_000; // 2026-11-25T11:00:00Z

    fn attempt(ex: i64, passed: bool, score: i32, at_ms: i64) -> AttemptInput {
        AttemptInput {
            exercise_id: ExerciseId(ex),
            xp_reward: 10,
            passed,
            score,
            at_ms,
        }
    }

    fn submit(s: &mut StudentProgress, input: AttemptInput) -> AttemptOutcome {
        let o = evaluate_attempt(s, &input);
        s.apply_attempt(&o);
        o
    }

    fn fresh() -> StudentProgress {
        StudentProgress::new(UserId(1))
    }

    #[test]
    fn a_failed_first_attempt_earns_only_the_beginner_badge() {
        let mut s = fresh();
        let o = submit(&mut s, attempt(1, false, 40, T0));
        assert_eq!(o.xp_awarded, 0);
        assert!(!o.first_pass);
        assert_eq!(o.new_badges, vec![Badge::Beginner]);
        assert!(o.new_achievements.is_empty());
        assert_eq!(o.progress.attempts, 1);
        assert_eq!(o.progress.failed_attempts, 1);
        assert_eq!(o.progress.best_score, 40);
        assert_eq!(s.streak.current, 0);
    }

    #[test]
    fn first_pass_earns_reward_and_first_exercise_bonus() {
        let mut s = fresh();
        let o = submit(&mut s, attempt(1, true, 80, T0));
        assert!(o.first_pass);
        assert_eq!(o.new_achievements, vec![Achievement::FirstExercise]);
        assert_eq!(o.xp_awarded, 10 + 50);
        assert_eq!(s.xp, 60);
        assert_eq!(o.progress.first_passed_at, Some(T0));
        assert_eq!(s.streak.current, 1);
    }

    #[test]
    fn a_second_pass_earns_nothing() {
        let mut s = fresh();
        submit(&mut s, attempt(1, true, 80, T0));
        let o = submit(&mut s, attempt(1, true, 90, T0 + 1000));
        assert!(!o.first_pass);
        assert_eq!(o.xp_awarded, 0);
        assert!(o.new_badges.is_empty() && o.new_achievements.is_empty());
        assert_eq!(o.progress.best_score, 90);
        assert_eq!(o.progress.first_passed_at, Some(T0));
        assert_eq!(o.progress.attempts, 2);
    }

    #[test]
    fn a_failed_attempt_after_a_pass_keeps_it_passed() {
        let mut s = fresh();
        submit(&mut s, attempt(1, true, 80, T0));
        let o = submit(&mut s, attempt(1, false, 10, T0 + 1000));
        assert!(o.progress.passed);
        assert_eq!(o.progress.best_score, 80);
        assert_eq!(o.progress.failed_attempts, 1);
    }

    #[test]
    fn perfect_score_once_even_on_an_already_passed_exercise() {
        let mut s = fresh();
        submit(&mut s, attempt(1, true, 80, T0));
        let o = submit(&mut s, attempt(1, true, 100, T0 + 1));
        assert_eq!(o.new_achievements, vec![Achievement::PerfectScore]);
        assert_eq!(o.xp_awarded, 75);
        let o = submit(&mut s, attempt(2, true, 100, T0 + 2));
        assert!(!o.new_achievements.contains(&Achievement::PerfectScore));
        // A failing attempt scored 100 is not a pass.
        let mut s = fresh();
        let o = submit(&mut s, attempt(1, false, 100, T0));
        assert!(o.new_achievements.is_empty());
    }

    #[test]
    fn ten_distinct_exercises() {
        let mut s = fresh();
        for ex in 1..=9 {
            let o = submit(&mut s, attempt(ex, true, 50, T0));
            assert!(!o.new_achievements.contains(&Achievement::TenExercises));
        }
        // Passing one of the nine again does not count.
        let o = submit(&mut s, attempt(3, true, 60, T0));
        assert!(o.new_achievements.is_empty());
        let o = submit(&mut s, attempt(10, true, 50, T0));
        assert_eq!(o.new_achievements, vec![Achievement::TenExercises]);
        assert_eq!(o.xp_awarded, 10 + 100);
    }

    #[test]
    fn badges_are_judged_after_all_xp_of_the_submission() {
        let mut s = fresh();
        s.xp = 40;
        s.badges.insert(Badge::Beginner);
        // 40 + 10 (reward) + 50 (FIRST_EXERCISE) = 100: EXPLORER in the same submission.
        let o = submit(&mut s, attempt(1, true, 50, T0));
        assert_eq!(o.xp_after, 100);
        assert_eq!(o.new_badges, vec![Badge::Explorer]);
        assert_eq!((o.level_before, o.level_after), (1, 2));
    }

    #[test]
    fn several_badges_can_arrive_at_once_each_only_once() {
        let mut s = fresh();
        s.xp = 990;
        let o = submit(&mut s, attempt(1, true, 50, T0));
        assert_eq!(
            o.new_badges,
            vec![
                Badge::Beginner,
                Badge::Explorer,
                Badge::Scholar,
                Badge::Expert
            ]
        );
        let o = submit(&mut s, attempt(2, true, 50, T0));
        assert!(o.new_badges.is_empty());
    }

    #[test]
    fn master_and_legend_arrive_exactly_at_their_thresholds() {
        let mut s = fresh();
        // A first pass gives 10 + 50 (FIRST_EXERCISE): from 1940 that is exactly 2000.
        s.xp = 1940;
        s.badges.extend([
            Badge::Beginner,
            Badge::Explorer,
            Badge::Scholar,
            Badge::Expert,
        ]);
        let o = submit(&mut s, attempt(1, true, 50, T0));
        assert_eq!(o.xp_after, 2000);
        assert_eq!(o.new_badges, vec![Badge::Master]);
        // One short of LEGEND: nothing; the next reward crosses 5000.
        s.xp = 4999;
        let o = submit(&mut s, attempt(2, false, 0, T0));
        assert!(o.new_badges.is_empty());
        let o = submit(&mut s, attempt(2, true, 50, T0));
        assert_eq!(o.xp_after, 5009);
        assert_eq!(o.new_badges, vec![Badge::Legend]);
        let o = submit(&mut s, attempt(3, true, 50, T0));
        assert!(o.new_badges.is_empty(), "LEGEND twice: {:?}", o.new_badges);
    }

    #[test]
    fn streak_counts_consecutive_paris_days_and_resets_after_a_gap() {
        let mut s = fresh();
        submit(&mut s, attempt(1, true, 50, T0));
        submit(&mut s, attempt(2, true, 50, T0 + 2 * 3_600_000)); // same day
        assert_eq!(s.streak.current, 1);
        submit(&mut s, attempt(3, true, 50, T0 + DAY));
        submit(&mut s, attempt(4, false, 0, T0 + 2 * DAY)); // a failure does not extend it
        assert_eq!(s.streak.current, 2);
        submit(&mut s, attempt(5, true, 50, T0 + 3 * DAY)); // missed a day: reset
        assert_eq!(s.streak.current, 1);
        assert_eq!(s.streak.longest, 2);
    }

    #[test]
    fn week_streak_on_the_seventh_consecutive_day() {
        let mut s = fresh();
        for day in 0..6 {
            let o = submit(&mut s, attempt(day + 1, true, 50, T0 + day * DAY));
            assert!(!o.new_achievements.contains(&Achievement::WeekStreak));
        }
        let o = submit(&mut s, attempt(7, true, 50, T0 + 6 * DAY));
        assert!(o.new_achievements.contains(&Achievement::WeekStreak));
        assert_eq!(s.streak.current, 7);
        let o = submit(&mut s, attempt(8, true, 50, T0 + 7 * DAY));
        assert!(!o.new_achievements.contains(&Achievement::WeekStreak));
    }

    #[test]
    fn an_attempt_stamped_before_the_last_pass_leaves_the_streak() {
        let mut s = fresh();
        submit(&mut s, attempt(1, true, 50, T0 + DAY));
        let before = s.streak;
        submit(&mut s, attempt(2, true, 50, T0));
        assert_eq!(s.streak, before);
    }

    #[test]
    fn a_hint_costs_once_and_never_below_zero() {
        let mut s = fresh();
        s.xp = 30;
        let o = evaluate_hint(&s, HintId(7), 10);
        assert_eq!(
            (o.xp_spent, o.xp_after, o.already_revealed),
            (10, 20, false)
        );
        s.apply_hint(&o);
        let again = evaluate_hint(&s, HintId(7), 10);
        assert_eq!(
            (again.xp_spent, again.xp_after, again.already_revealed),
            (0, 20, true)
        );
        let costly = evaluate_hint(&s, HintId(8), 50);
        assert_eq!((costly.xp_spent, costly.xp_after), (20, 0));
        s.apply_hint(&costly);
        assert_eq!(s.xp, 0);
        assert!(s.hints_used.contains(&HintId(8)));
    }
}
