package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// CopyRecordings copies the recording file of every session in src's index
// from dir into dst's recording chunks, so replicas on PostgreSQL replay
// sessions recorded before the switch. A session whose file is missing is
// counted in missing, not an error.
func CopyRecordings(ctx context.Context, src storage.Store, dir recordings.Dir, dst recordings.ChunkStore) (copied, missing int, err error) {
	sess, err := src.Sessions(ctx, storage.SessionFilter{})
	if err != nil {
		return 0, 0, err
	}
	to := recordings.Chunked{Chunks: dst}
	for _, s := range sess {
		if s.Recording == "" {
			continue
		}
		b, err := dir.ReadAll(ctx, s.Recording)
		if errors.Is(err, recordings.ErrNotFound) {
			missing++
			continue
		}
		if err != nil {
			return copied, missing, fmt.Errorf("migrate: recording of %s: %w", s.ID, err)
		}
		if err := to.Import(ctx, s.Recording, b); err != nil {
			return copied, missing, fmt.Errorf("migrate: recording of %s: %w", s.ID, err)
		}
		copied++
	}
	return copied, missing, nil
}
