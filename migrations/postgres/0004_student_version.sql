-- One writer per student's state, checked by the database (issue 13, "One owner per student"):
-- every change of a student's state (an attempt, a hint reveal) was computed by an actor from the
-- state it loaded at some version; the writer's batch bumps `version` only if it is still that
-- one, inside the batch's transaction, and writes nothing of a change computed on an older base.
-- Rows that exist keep version 0 until their next change.
ALTER TABLE student_stats ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
