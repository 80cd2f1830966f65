-- A student's attempts of the last hour, read once when their actor starts, keep the submission
-- rate limit across actor restarts and server restarts.
CREATE INDEX attempts_student_created ON attempts (student_id, created_at);
