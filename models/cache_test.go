package models_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/models"
)

// Stage 3: the cached gallery must answer like the PostgreSQL one.
func init() {
	galleryImpls["CachedGallery"] = func(t *testing.T, db *gorm.DB) models.Gallery {
		rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		t.Cleanup(func() { rdb.Close() })
		return models.NewCachedGallery(models.NewPhotoStore(db, models.Sequential{}), models.NewCache(rdb, time.Minute, 1<<20, nil))
	}
}
