-- Stage 6: uploads answer at once and a worker makes the images later, so a
-- photo has a state: "processing" until its worker has stored the images,
-- "ready" after, "failed" when its job died (a corrupt image). Every photo
-- that exists before this migration (the seed, earlier uploads) is ready.
-- A constant default adds the column without rewriting the table.

-- +goose Up
ALTER TABLE photos ADD COLUMN state text NOT NULL DEFAULT 'ready'
    CONSTRAINT photos_state_check CHECK (state IN ('processing', 'ready', 'failed'));

-- +goose Down
ALTER TABLE photos DROP COLUMN state;
