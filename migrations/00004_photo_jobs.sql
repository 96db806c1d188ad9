-- Stage 6: the database is the record of which uploads still need their
-- images. A photo in state "processing" names the job that makes them
-- (job_id), so that a process starting after a crash, a Ctrl-C or a Redis
-- restart can tell a photo whose job is gone from one whose job waits, and
-- enqueue a new job for it (app/jobqueue's recovery). Seeded and finished
-- photos have no job (NULL), so the column is added without rewriting the
-- table.

-- +goose Up
ALTER TABLE photos ADD COLUMN job_id text;

-- Serves the recovery scan, at start and every 30 s:
--   SELECT id, image_key, job_id FROM photos
--    WHERE state = 'processing' AND created_at < $1 AND id > $2 ORDER BY id LIMIT $3
-- Without it that scan reads all 1.5M photos; with it, only the few
-- unfinished ones (the index holds nothing else).
CREATE INDEX photos_unfinished_idx ON photos (id) WHERE state = 'processing';

-- +goose Down
DROP INDEX photos_unfinished_idx;
ALTER TABLE photos DROP COLUMN job_id;
