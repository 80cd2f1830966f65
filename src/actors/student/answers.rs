//! The answers kept for resends that arrive after the answer, and the requests waiting for an
//! attempt's answer (its first sender and its resends).

use super::{ActorError, RECENT_ANSWERS, StudentActor, SubmitAnswer};
use crate::domain::ids::AttemptId;

impl StudentActor {
    pub(super) fn remember(&mut self, answer: SubmitAnswer) {
        if self.recent_order.len() >= RECENT_ANSWERS
            && let Some(old) = self.recent_order.pop_front()
        {
            self.recent_answers.remove(&old);
        }
        self.recent_order.push_back(answer.attempt_id.clone());
        self.recent_answers
            .insert(answer.attempt_id.clone(), answer);
    }

    pub(super) fn answer_waiters(
        &mut self,
        attempt_id: &AttemptId,
        result: Result<SubmitAnswer, ActorError>,
    ) {
        for tx in self.waiting.remove(attempt_id).unwrap_or_default() {
            let _ = tx.send(result.clone());
        }
    }
}
