-- Stage 4: the indexes the hot queries need. Until now every one of these
-- queries scanned a whole table (1.5M photos, ~4.5M photo_tags at full seed).
-- Each index names the query it serves; EXPLAIN in the stage 4 tests proves it.

-- +goose Up
-- User page and "more from this owner" on the photo page:
--   SELECT ... FROM photos WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT n
CREATE INDEX photos_user_id_id_idx ON photos (user_id, id DESC);

-- Tag page: SELECT ... FROM photo_tags WHERE tag_id = $1 AND photo_id < $2 ORDER BY photo_id DESC LIMIT n
CREATE INDEX photo_tags_tag_id_photo_id_idx ON photo_tags (tag_id, photo_id DESC);

-- Favorite count on the photo page: SELECT count(*) FROM favorites WHERE photo_id = $1
-- (the primary key starts with user_id, which serves "has this user favorited it").
CREATE INDEX favorites_photo_id_idx ON favorites (photo_id);

-- Comments on the photo page: SELECT ... FROM comments WHERE photo_id = $1 ORDER BY id
CREATE INDEX comments_photo_id_id_idx ON comments (photo_id, id);

-- +goose Down
DROP INDEX comments_photo_id_id_idx;
DROP INDEX favorites_photo_id_idx;
DROP INDEX photo_tags_tag_id_photo_id_idx;
DROP INDEX photos_user_id_id_idx;
