package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/localshell"
	"github.com/jumpgate/jumpgate/server"
)

func newServerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run the jumpgate server (CA API, bastion, web console)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.configFile == "" {
				return errors.New("server needs --config FILE")
			}
			cfg, err := config.Load(g.configFile)
			if err != nil {
				return err
			}
			log := g.logger()
			shells := localshell.New(log)
			defer shells.Close()
			// SIGHUP reloads policy (it is also reloaded on change).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return server.Run(cmd.Context(), cfg, server.Options{Logger: log, LocalShell: shellAdapter{shells}, Reload: hup, ConfigFile: g.configFile})
		},
	}
}

// shellAdapter lets the bastion open local targets.
type shellAdapter struct{ s *localshell.Server }

func (a shellAdapter) Connect(ctx context.Context, t config.Target, login string) (*gossh.Client, error) {
	return a.s.Connect(ctx, localshell.Target{Name: t.Name, User: t.User, Shell: t.Shell}, login)
}
