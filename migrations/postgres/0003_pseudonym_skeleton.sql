-- Look-alike pseudonyms (issue 8): besides the case- and accent-folded key, each enrollment keeps
-- the pseudonym's Unicode confusable skeleton (UTS #39, computed by the server:
-- domain::accounts::pseudonym_skeleton), unique per class, so that "Alice" written with a Cyrillic
-- "А" cannot join beside "Alice". Rows enrolled before this migration get theirs at start-up
-- (Store::backfill_pseudonym_skeletons); until then NULL, which a unique index never compares.
ALTER TABLE enrollments ADD COLUMN pseudonym_skeleton TEXT;
CREATE UNIQUE INDEX enrollments_classroom_skeleton ON enrollments (classroom_id, pseudonym_skeleton);
