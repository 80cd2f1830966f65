//! What the two adapters (`http/` and `ws/`) share: the submit path, the progress and hint views,
//! who may read a class, and how an actor's refusal becomes an `AppError`. Below both adapters,
//! above the actors: http and ws call here and never each other.

pub mod access;
pub mod account_views;
pub mod submit;
pub mod views;

use crate::actors::student::ActorError;
use crate::error::AppError;

/// What a refused submission or hint reveal answers.
impl From<ActorError> for AppError {
    fn from(e: ActorError) -> AppError {
        match e {
            ActorError::RateLimited { retry_after_secs } => {
                AppError::TooManyRequests { retry_after_secs }
            }
            ActorError::Overloaded => AppError::Unavailable {
                message: "Trop de soumissions en attente ; réessayez dans un instant.".into(),
                retry_after_secs: 2,
            },
            ActorError::NotStored => AppError::Unavailable {
                message: "La tentative n'a pas pu être enregistrée ; réessayez.".into(),
                retry_after_secs: 5,
            },
            // A 4xx: the browser's outbox keeps resending only what may succeed later.
            ActorError::NotStorable => AppError::bad_request(
                "not_storable",
                "Cette tentative contient des données que le serveur ne peut pas enregistrer.",
            ),
            ActorError::ShuttingDown => AppError::Unavailable {
                message: "Le serveur redémarre ; réessayez dans un instant.".into(),
                retry_after_secs: 5,
            },
            ActorError::Reloading => AppError::Unavailable {
                message:
                    "Votre progression est en cours de rechargement ; réessayez dans un instant."
                        .into(),
                retry_after_secs: 1,
            },
            ActorError::AttemptIdConflict => AppError::Conflict {
                code: "attempt_id_conflict",
                message: "Cet attempt_id désigne déjà une autre tentative.".into(),
            },
        }
    }
}
