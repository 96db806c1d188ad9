package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The upload scenario: every virtual user logs in as a seeded user and
// uploads a 12-megapixel JPEG (4000×3000, the size of a phone's photo) again
// and again; at the end each user deletes what it uploaded, so the data set
// is as before. It measures what an upload costs the request: the whole
// decode, re-encode and scaling up to stage 5, a file write and an enqueue
// from stage 6 on (docs/stages/06-queue.md).
type uploads struct {
	*browse
	body        []byte // the multipart form, the same for every upload
	contentType string
	// drain makes the teardown wait until the workers have made each
	// upload's images before deleting it (the upload scenario, whose
	// subject the queue is); the writes scenario deletes at once.
	drain bool
}

// uploadWidth and uploadHeight are the upload scenario's image: 12 megapixels.
const uploadWidth, uploadHeight = 4000, 3000

func uploadSetup(ctx context.Context, c *client, o Options, info ServerInfo) (any, error) {
	b, err := browseSetup(ctx, c, o, info)
	if err != nil {
		return nil, err
	}
	img, err := uploadImage()
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("title", "Load test upload")
	mw.WriteField("tags", "loadtest")
	fw, err := mw.CreateFormFile("image", "loadtest-12mp.jpg")
	if err != nil {
		return nil, err
	}
	fw.Write(img)
	mw.Close()
	return &uploads{browse: b.(*browse), body: body.Bytes(), contentType: mw.FormDataContentType(), drain: true}, nil
}

// uploadImage is the 12-megapixel JPEG, made once and kept in the temporary
// directory (making it takes a second or two).
func uploadImage() ([]byte, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("flickrkillr-loadtest-%dx%d-v2.jpg", uploadWidth, uploadHeight))
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	// Gradients under fine noise: about the 3 MB of a phone's 12-megapixel
	// photo (smooth gradients alone compress to a fifth of that).
	img := image.NewRGBA(image.Rect(0, 0, uploadWidth, uploadHeight))
	rng := rand.New(rand.NewPCG(12, 0))
	for y := range uploadHeight {
		for x := range uploadWidth {
			n := uint8(rng.IntN(24))
			img.SetRGBA(x, y, color.RGBA{uint8(x*240/uploadWidth) + n, uint8(y*240/uploadHeight) + n, 120 + uint8(rng.IntN(24)), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err == nil {
		os.Rename(tmp, path)
	}
	return buf.Bytes(), nil
}

func uploadLogin(ctx context.Context, vu *vuser) error {
	return logIn(ctx, vu, vu.shared.(*uploads).browse)
}

func uploadStep(ctx context.Context, vu *vuser) { vu.shared.(*uploads).upload(ctx, vu) }

// upload uploads the image and remembers the new photo for the teardown
// (the upload scenario's step and the writes mix's upload). An upload runs
// to its answer even when the run ends meanwhile, so that every photo the
// server made is known (and deleted).
func (u *uploads) upload(ctx context.Context, vu *vuser) {
	_, err := vu.timed(ctx, "upload", isUploaded, func() error {
		return vu.client.doBody(context.WithoutCancel(ctx), http.MethodPost, "/upload", u.contentType, u.body, &vu.res)
	})
	if err == nil {
		vu.made = append(vu.made, string(vu.res.location))
	}
}

// isUploaded is a 303 to the new photo.
func isUploaded(res *response) error {
	if res.status != http.StatusSeeOther || !strings.HasPrefix(string(res.location), "/photos/") {
		return fmt.Errorf("upload: status %d, Location %q; want 303 to /photos/<id>", res.status, res.location)
	}
	return nil
}

// uploadTeardown deletes the user's uploads (the upload and writes
// scenarios' teardown). In the upload scenario (drain), from stage 6 on, it
// first waits (up to the teardown's deadline, teardownWait) until the photo
// is no longer processing, so that the workers drain real jobs, as they
// would with users who keep their photos, and the queue can be watched
// draining (/metrics). The writes scenario deletes at once: the job of a
// deleted photo only removes its files. The deletes themselves do not stop
// at that deadline.
func uploadTeardown(ctx context.Context, vu *vuser) {
	del := context.WithoutCancel(ctx)
	drain := vu.shared.(*uploads).drain
	for _, photo := range vu.made {
		for drain {
			body, err := fetch(ctx, vu.client, photo)
			if err != nil || !strings.Contains(body, "/static/photo-processing.svg") {
				break
			}
			if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
				break
			}
		}
		// A server still busy with the run's uploads may answer 503 (its
		// request deadline): try again, spread out, for up to a minute.
		var res response
		var err error
		for try := 0; try < 60; try++ {
			err = vu.client.do(del, http.MethodPost, photo+"/delete", nil, &res)
			if err != nil || res.status != http.StatusServiceUnavailable {
				break
			}
			sleepUntil(del, time.Now().Add(time.Duration(500+vu.rng.IntN(1000))*time.Millisecond))
		}
		if err != nil || res.status != http.StatusSeeOther {
			fmt.Fprintf(os.Stderr, "loadtest: could not delete %s (status %d, %v)\n", photo, res.status, err)
		}
	}
}
