//! Who may read a class: its teacher (the dashboard, the progress grid) or its members (the
//! leaderboard). Anything else answers 404: a class that is not the caller's does not exist for
//! them.
//!
//! Checked with one indexed query before any class actor is asked: a stranger probing ids starts
//! no actor and loads no roster.

use crate::domain::ids::{ClassroomId, UserId};
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::store::classrooms::ClassroomRole;

/// What the caller must be to read the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Teacher,
    /// The teacher or a student of the class.
    Member,
}

/// `Ok` if `user` may read class `id` as `need` says, else 404.
pub async fn require_classroom(
    state: &AppState,
    id: ClassroomId,
    user: UserId,
    need: Need,
) -> Result<()> {
    let role = state.store.classroom_role(id, user).await?;
    match (role, need) {
        (Some(ClassroomRole::Teacher), _) | (Some(ClassroomRole::Member), Need::Member) => Ok(()),
        _ => Err(AppError::NotFound("Classe introuvable.")),
    }
}
