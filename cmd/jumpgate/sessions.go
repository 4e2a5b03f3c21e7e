package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/recorder"
	"github.com/jumpgate/jumpgate/storage"
)

func newSessionsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "sessions", Short: "Recorded sessions"}
	var asJSON bool
	var user, target, status, since string
	list := &cobra.Command{
		Use:   "list",
		Short: "List sessions (auditors see all, others their own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"user": user, "target": target, "status": status, "since": since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var ss []storage.Session
			if err := g.call(cmd, "GET", "/v1/sessions?"+q.Encode(), nil, &ss); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), ss)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tLOGIN\tTARGET\tKIND\tSTART\tEND\tBYTES\tSTATUS")
			for _, s := range ss {
				end := "-"
				if !s.End.IsZero() {
					end = s.End.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.User, s.Login, s.Target, s.Kind, s.Start.Local().Format(time.DateTime), end, s.Bytes, s.Status)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	list.Flags().StringVar(&user, "user", "", "only this user's sessions")
	list.Flags().StringVar(&target, "target", "", "only sessions to this target")
	list.Flags().StringVar(&status, "status", "", "running, ended or interrupted")
	list.Flags().StringVar(&since, "since", "", "a duration (24h) or an RFC3339 time")
	export := &cobra.Command{
		Use:   "export ID",
		Short: "Write a recording as asciicast v2 on stdout (plays with asciinema play)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd, "GET", "/v1/sessions/"+url.PathEscape(args[0])+"/recording", nil, cmd.OutOrStdout())
		},
	}
	c.AddCommand(list, export)
	return c
}

func newReplayCmd(g *globals) *cobra.Command {
	var speed float64
	var idle time.Duration
	cmd := &cobra.Command{
		Use:   "replay ID",
		Short: "Play a recorded session in this terminal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			if err := g.call(cmd, "GET", "/v1/sessions/"+url.PathEscape(args[0])+"/recording", nil, &b); err != nil {
				return err
			}
			return replay(cmd, bytes.NewReader(b), speed, idle)
		},
	}
	cmd.Flags().Float64Var(&speed, "speed", 1, "playback speed")
	cmd.Flags().DurationVar(&idle, "idle-limit", 0, "cap pauses at this length (0: the recording's own limit)")
	return cmd
}

func replay(cmd *cobra.Command, r io.Reader, speed float64, idle time.Duration) error {
	// The player seeks in files; keep the download in a private temp file.
	f, err := os.CreateTemp("", "jumpgate-replay-*.cast")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	rd, err := recorder.Open(f.Name())
	if err != nil {
		return err
	}
	defer rd.Close()
	return recorder.Play(cmd.Context(), cmd.OutOrStdout(), rd, recorder.PlayOptions{Speed: speed, IdleLimit: idle})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
