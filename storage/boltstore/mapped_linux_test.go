package boltstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jumpgate/jumpgate/storage"
)

func rssFileKB(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			var kb int
			fmt.Sscan(v, &kb)
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestAuditAppendsDoNotGrowRSS: appending 40 MB of audit events leaves few
// of the file's pages mapped in the process (the kernel maps 64 KiB around
// every page bbolt reads, so without dropMapped the whole appended region
// ends up counted in RSS).
func TestAuditAppendsDoNotGrowRSS(t *testing.T) {
	var kept int // KB the appends left mapped without dropping
	for _, tc := range []struct {
		name string
		drop bool
	}{{"without dropping", false}, {"dropping", true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.db")
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.db.NoSync = true // the mapping is what is tested, not durability
			s.db.MaxBatchDelay = 0
			s.dropEvery = 1 << 62
			if tc.drop {
				s.dropEvery = 0
			}
			body := strings.Repeat("x", 400)
			before := rssFileKB(t)
			const batches, per = 4000, 16 // many small commits, as a busy forwarder's
			for i := 0; i < batches; i++ {
				builds := make([]storage.AuditBuilder, per)
				for j := range builds {
					builds[j] = func(seq uint64, prev string) ([]byte, string, error) {
						h := fmt.Sprintf("%064x", seq)
						return []byte(fmt.Sprintf(`{"seq":%d,"body":%q,"hash":"%s"}`, seq, body, h)), h, nil
					}
				}
				if _, err := s.AppendAuditBatch(context.Background(), builds); err != nil {
					t.Fatal(err)
				}
			}
			st, _ := os.Stat(path)
			grew := rssFileKB(t) - before
			t.Logf("file %d KB, RssFile grew %d KB", st.Size()>>10, grew)
			if !tc.drop {
				kept = grew
				return
			}
			if kept < 2048 {
				t.Skipf("appends left only %d KB mapped without dropping: this kernel does not fault around", kept)
			}
			if grew > kept/4 {
				t.Errorf("RssFile grew %d KB dropping, %d KB without: the appended pages stay mapped", grew, kept)
			}
		})
	}
}
