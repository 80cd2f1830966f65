-- The whole schema of nsi-live, SQLite edition. Times are BIGINT milliseconds since the Unix epoch (UTC),
-- as on PostgreSQL. Keep this file and migrations/postgres/0001_initial.sql in step.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    role                TEXT NOT NULL CHECK (role IN ('student', 'teacher', 'admin')),
    -- Teachers: the name they chose; students: their first pseudonym. Never an e-mail.
    display_name        TEXT NOT NULL,
    -- Teachers and admins sign in with a login (lower-cased); students have none.
    login               TEXT UNIQUE,
    password_hash       TEXT,
    -- Students sign in again with class code + pseudonym + a personal code, kept hashed.
    recovery_code_hash  TEXT,
    leaderboard_opt_out BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL,
    disabled_at         BIGINT
);

CREATE TABLE sessions (
    -- SHA-256 (hex) of the random token held in the cookie; the token itself is never stored.
    token_hash   TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE teacher_invites (
    code_hash  TEXT PRIMARY KEY,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    used_at    BIGINT,
    used_by    BIGINT REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE classrooms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    teacher_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    school      TEXT NOT NULL DEFAULT '',
    join_code   TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    archived_at BIGINT
);
CREATE INDEX classrooms_teacher_id ON classrooms (teacher_id);

CREATE TABLE enrollments (
    classroom_id  BIGINT NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    student_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pseudonym     TEXT NOT NULL,
    -- Case- and accent-folded pseudonym: unique per class, so "Léa" and "lea" cannot both join.
    pseudonym_key TEXT NOT NULL,
    joined_at     BIGINT NOT NULL,
    PRIMARY KEY (classroom_id, student_id),
    UNIQUE (classroom_id, pseudonym_key)
);
CREATE INDEX enrollments_student_id ON enrollments (student_id);

-- The catalogue is authored as files under content/ and synced here at start-up (by slug, so
-- ids never change); it is served from memory. Rows whose file is gone are kept inactive so that
-- attempts on them stay meaningful.
CREATE TABLE courses (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slug        TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    level       TEXT NOT NULL CHECK (level IN ('snt', 'premiere', 'terminale')),
    description TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE chapters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id   BIGINT NOT NULL REFERENCES courses (id),
    slug        TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX chapters_course_id ON chapters (course_id);

CREATE TABLE content_blocks (
    chapter_id BIGINT NOT NULL REFERENCES chapters (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('text', 'code', 'tip', 'warning')),
    language   TEXT,
    body       TEXT NOT NULL,
    PRIMARY KEY (chapter_id, position)
);

CREATE TABLE exercises (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chapter_id BIGINT NOT NULL REFERENCES chapters (id),
    slug       TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('python', 'sql', 'mcq', 'parsons')),
    xp_reward  INTEGER NOT NULL CHECK (xp_reward >= 0),
    difficulty INTEGER NOT NULL DEFAULT 1,
    position   INTEGER NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX exercises_chapter_id ON exercises (chapter_id);

CREATE TABLE hints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    exercise_id BIGINT NOT NULL REFERENCES exercises (id),
    position    INTEGER NOT NULL,
    body        TEXT NOT NULL,
    xp_cost     INTEGER NOT NULL CHECK (xp_cost >= 0),
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (exercise_id, position)
);

CREATE TABLE chapter_assignments (
    classroom_id BIGINT NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    chapter_id   BIGINT NOT NULL REFERENCES chapters (id),
    due_at       BIGINT,
    assigned_at  BIGINT NOT NULL,
    PRIMARY KEY (classroom_id, chapter_id)
);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Made by the client (UUID): a resent attempt is stored once (ON CONFLICT DO NOTHING).
    attempt_id  TEXT NOT NULL UNIQUE,
    student_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exercise_id BIGINT NOT NULL REFERENCES exercises (id),
    passed      BOOLEAN NOT NULL,
    score       INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    code        TEXT NOT NULL DEFAULT '',
    duration_ms BIGINT,
    created_at  BIGINT NOT NULL,
    -- The answer the submitter got (JSON: XP awarded, badges, achievements…): a resend of the same
    -- attempt_id, even after a restart, gets exactly the same answer.
    outcome     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX attempts_student_exercise ON attempts (student_id, exercise_id);
CREATE INDEX attempts_exercise_id ON attempts (exercise_id);

-- Per student and exercise: the folded attempts, so that loading a student is one small read.
CREATE TABLE progress (
    student_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exercise_id     BIGINT NOT NULL REFERENCES exercises (id),
    attempts        INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL,
    best_score      INTEGER NOT NULL,
    passed          BOOLEAN NOT NULL,
    first_passed_at BIGINT,
    last_attempt_at BIGINT NOT NULL,
    PRIMARY KEY (student_id, exercise_id)
);

-- XP and streaks. The level is derived (xp / 100 + 1), never stored.
CREATE TABLE student_stats (
    student_id     BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    xp             BIGINT NOT NULL DEFAULT 0 CHECK (xp >= 0),
    current_streak INTEGER NOT NULL DEFAULT 0,
    longest_streak INTEGER NOT NULL DEFAULT 0,
    -- Day number (days since 1970-01-01 on the Europe/Paris calendar) of the last passed attempt.
    last_pass_day  INTEGER,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE student_badges (
    student_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    badge      TEXT NOT NULL,
    awarded_at BIGINT NOT NULL,
    PRIMARY KEY (student_id, badge)
);

CREATE TABLE student_achievements (
    student_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    achievement TEXT NOT NULL,
    xp_awarded  INTEGER NOT NULL,
    unlocked_at BIGINT NOT NULL,
    PRIMARY KEY (student_id, achievement)
);

CREATE TABLE hint_uses (
    student_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hint_id    BIGINT NOT NULL REFERENCES hints (id),
    xp_spent   INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (student_id, hint_id)
);
