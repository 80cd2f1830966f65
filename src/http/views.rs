//! JSON shapes shared by the account and classroom routes. Names and pseudonyms go out as JSON
//! strings, exactly as stored: the browser renders them as text.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::domain::catalogue::Catalogue;
use crate::domain::ids::ClassroomId;
use crate::store::assignments::AssignmentRecord;
use crate::store::classrooms::{Classroom, RosterEntry};
use crate::store::enrollments::StudentClass;
use crate::store::users::UserRecord;

pub fn user(u: &UserRecord) -> Value {
    let mut v = json!({
        "id": u.id,
        "role": u.role,
        "display_name": u.display_name,
        "leaderboard_opt_out": u.leaderboard_opt_out,
        "created_at": u.created_at,
    });
    if let (Some(login), Value::Object(map)) = (&u.login, &mut v) {
        map.insert("login".into(), json!(login));
    }
    v
}

/// A classroom as its teacher sees it.
pub fn classroom(c: &Classroom) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "school": c.school,
        "join_code": c.join_code,
        "created_at": c.created_at,
        "archived_at": c.archived_at,
        "student_count": c.student_count,
        "leaderboard_server_checked_only": c.leaderboard_server_checked_only,
    })
}

/// A classroom as one of its students sees it, with its assignments.
pub fn student_class(c: &StudentClass, assignments: &[Value]) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "school": c.school,
        "teacher_name": c.teacher_name,
        "pseudonym": c.pseudonym,
        "joined_at": c.joined_at,
        "archived_at": c.archived_at,
        "assignments": assignments,
    })
}

pub fn roster_entry(e: &RosterEntry) -> Value {
    json!({
        "student_id": e.student_id,
        "pseudonym": e.pseudonym,
        "joined_at": e.joined_at,
    })
}

/// An assignment with its chapter's title from the catalogue; `None` for a chapter that is no
/// longer in the content (it stays assigned, but there is nothing to show).
pub fn assignment(a: &AssignmentRecord, catalogue: &Catalogue) -> Option<Value> {
    let chapter = catalogue.chapter(&a.chapter_slug)?;
    Some(json!({
        "chapter_slug": chapter.slug,
        "chapter_title": chapter.title,
        "course_slug": chapter.course_slug,
        "course_title": chapter.course_title,
        "due_at": a.due_at,
        "assigned_at": a.assigned_at,
    }))
}

/// Assignments grouped by classroom.
pub fn assignments_by_class(
    records: &[AssignmentRecord],
    catalogue: &Catalogue,
) -> HashMap<ClassroomId, Vec<Value>> {
    let mut by_class: HashMap<ClassroomId, Vec<Value>> = HashMap::new();
    for a in records {
        if let Some(v) = assignment(a, catalogue) {
            by_class.entry(a.classroom_id).or_default().push(v);
        }
    }
    by_class
}
