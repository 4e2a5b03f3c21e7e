package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
	"github.com/jumpgate/jumpgate/storage/boltstore"
	"github.com/jumpgate/jumpgate/storage/migrate"
	"github.com/jumpgate/jumpgate/storage/pgstore"
)

func newStorageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "storage", Short: "Storage maintenance"}
	var from, to, recDir string
	m := &cobra.Command{
		Use:   "migrate --from bolt:///var/lib/jumpgate/jumpgate.db --to postgres://…",
		Short: "Copy an installation's storage to another backend and verify the audit chain",
		Long: `Copy keys, serials, certificates, revocations, the audit chain (hashes
unchanged), requests and the session index into an empty target, then verify
the copied chain. Stop the server first (the bbolt file is locked while it runs).
Into PostgreSQL, the recording files (--recordings, default the recordings
directory next to a bolt:// source) are copied too, as chunks, so every
replica replays them; the files stay where they are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("--from and --to are required")
			}
			src, err := openURL(cmd, from)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := openURL(cmd, to)
			if err != nil {
				return err
			}
			defer dst.Close()
			r, err := migrate.Copy(cmd.Context(), src, dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %d keys, %d certificates, %d revocations, %d audit events (chain verified), %d requests, %d sessions; serials continue above %d\n",
				r.Keys, r.Certs, r.Revocations, r.AuditEvents, r.Requests, r.Sessions, r.SerialFloor)
			cs, ok := dst.(recordings.ChunkStore)
			if !ok {
				return nil
			}
			if recDir == "" && strings.HasPrefix(from, "bolt://") {
				recDir = filepath.Join(filepath.Dir(strings.TrimPrefix(from, "bolt://")), "recordings")
			}
			if recDir == "" {
				return nil
			}
			n, missing, err := migrate.CopyRecordings(cmd.Context(), src, recordings.Dir{Path: recDir}, cs)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %d recordings from %s (%d listed sessions had no recording file)\n", n, recDir, missing)
			return nil
		},
	}
	m.Flags().StringVar(&from, "from", "", "source: bolt:///path/to/jumpgate.db or postgres://…")
	m.Flags().StringVar(&to, "to", "", "target: postgres://… or bolt:///path")
	m.Flags().StringVar(&recDir, "recordings", "", "recordings directory to copy into PostgreSQL (default: recordings/ next to a bolt:// source)")
	c.AddCommand(m)
	return c
}

func openURL(cmd *cobra.Command, u string) (storage.Store, error) {
	switch {
	case strings.HasPrefix(u, "bolt://"):
		return boltstore.Open(strings.TrimPrefix(u, "bolt://"))
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return pgstore.Open(cmd.Context(), u)
	default:
		return nil, fmt.Errorf("storage URL %q must start with bolt:// or postgres://", redactURL(u))
	}
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j > 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}
