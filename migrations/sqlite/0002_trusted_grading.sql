-- Trusted grading (issue 10). Each attempt says who computed its verdict: the server (MCQ,
-- Parsons, SQL) or the student's browser (Python, and every attempt stored before this
-- migration); `details` keeps what the browser reported (Python's per-test results, JSON);
-- `xp_awarded` is the XP the attempt earned, so that a class can rank by server-checked XP only
-- (older attempts keep 0: they are browser-checked and never count there).
ALTER TABLE attempts ADD COLUMN checked_by TEXT NOT NULL DEFAULT 'browser'
    CHECK (checked_by IN ('server', 'browser'));
ALTER TABLE attempts ADD COLUMN details TEXT;
ALTER TABLE attempts ADD COLUMN xp_awarded BIGINT NOT NULL DEFAULT 0;

-- A class setting (default off): the leaderboard counts only XP earned by server-checked attempts.
ALTER TABLE classrooms ADD COLUMN leaderboard_server_checked_only BOOLEAN NOT NULL DEFAULT FALSE;
