// Command jumpgate is the single jumpgate binary: server, development
// environment, and the command line for users, approvers and auditors.
// It only parses flags, loads configuration and wires packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/apiclient"
	"github.com/jumpgate/jumpgate/login"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = "unknown"
)

type globals struct {
	server, sshDir, caFile, configFile string
	logLevel                           string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "jumpgate: "+oneLine(err))
		os.Exit(1)
	}
}

func oneLine(err error) string {
	var ae *login.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "jumpgate",
		Short:         "Zero-trust gate for SSH, PostgreSQL and Kubernetes access",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "", "jumpgate server URL (default: the one saved by the last login)")
	pf.StringVar(&g.sshDir, "ssh-dir", "", "directory of the identity written by jumpgate login (default ~/.ssh/jumpgate)")
	pf.StringVar(&g.caFile, "ca-file", "", "extra PEM roots to trust for the server's TLS")
	pf.StringVar(&g.configFile, "config", "", "server config file: run against that server's data locally instead of --server")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newDevCmd(g), newServerCmd(g), newLoginCmd(g), newStatusCmd(g), newCACmd(g),
		newSessionsCmd(g), newReplayCmd(g), newAuditCmd(g),
		newRequestCmd(g), newRequestsCmd(g), newApproveCmd(g, true), newApproveCmd(g, false), newKubeConfigCmd(g), newStorageCmd(g),
		newVersionCmd(),
	)
	return root
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (g *globals) client() (apiclient.Client, error) {
	return apiclient.Open(apiclient.Options{Server: g.server, SSHDir: g.sshDir, CAFile: g.caFile, ConfigFile: g.configFile, Logger: g.logger()})
}

// call runs one API request with a fresh client.
func (g *globals) call(cmd *cobra.Command, method, path string, body, out any) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Do(cmd.Context(), method, path, body, out)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version and commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "jumpgate %s (commit %s)\n", version, commit)
			return nil
		},
	}
}
