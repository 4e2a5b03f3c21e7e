package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/devenv"
	"github.com/jumpgate/jumpgate/devidp"
	"github.com/jumpgate/jumpgate/localshell"
	"github.com/jumpgate/jumpgate/login"
)

func newDevCmd(g *globals) *cobra.Command {
	var o devenv.Options
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole product on loopback for trying it out (development only)",
		Long: `Run an embedded development OpenID provider with demo users, the CA, the HTTPS
API, the bastion and a local demo target on loopback, with state under
./.jumpgate-dev/. It prints the exact commands to try. Never use it in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := g.logger()
			shells := localshell.New(log)
			defer shells.Close()
			o.LocalShell = shellAdapter{shells}
			o.Logger = log
			o.Out = cmd.OutOrStdout()
			return devenv.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", ".jumpgate-dev", "state directory")
	f.StringVar(&o.HTTPSAddr, "https-addr", "127.0.0.1:8443", "HTTPS listen address (loopback)")
	f.StringVar(&o.SSHAddr, "ssh-addr", "127.0.0.1:2222", "bastion listen address (loopback)")
	f.StringVar(&o.DemoLogin, "demo-login", "", "OS account of the demo target's shell (default: you)")

	var user, password string
	approve := &cobra.Command{
		Use:   "approve-device --server URL --user NAME CODE",
		Short: "Complete a --device login at the dev IdP from a terminal (dev only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.server == "" || user == "" {
				return errors.New("--server and --user are required")
			}
			if password == "" {
				password = devidp.DemoPassword(user)
			}
			hc, err := login.HTTPClient(g.caFile)
			if err != nil {
				return err
			}
			uri := strings.TrimSuffix(g.server, "/") + "/dev-idp" + devidp.PathDevice
			if err := devidp.CompleteDeviceLogin(cmd.Context(), hc, uri, args[0], user, password); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "device login %s approved as %s\n", args[0], user)
			return nil
		},
	}
	approve.Flags().StringVar(&user, "user", "", "demo user (alice, bob, carol, dave)")
	approve.Flags().StringVar(&password, "password", "", "password (default: the demo password)")
	cmd.AddCommand(approve)
	return cmd
}
