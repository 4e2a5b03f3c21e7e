package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/login"
)

func newLoginCmd(g *globals) *cobra.Command {
	var device bool
	var tokenFile string
	var ttl time.Duration
	var noAgent bool
	var targets []string
	cmd := &cobra.Command{
		Use:   "login --server URL",
		Short: "Log in through the identity provider and get a short-lived SSH certificate",
		Long: `Log in through the identity provider (authorization code + PKCE with a loopback
redirect; --device for the device flow on hosts without a browser; --id-token-file
for automation), then write a fresh ed25519 key, its certificate and a known_hosts
line under --ssh-dir, and add them to ssh-agent when SSH_AUTH_SOCK is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if device && tokenFile != "" {
				return errors.New("--device and --id-token-file exclude each other")
			}
			_, err := login.Login(cmd.Context(), login.Options{
				Server: g.server, SSHDir: g.sshDir, CAFile: g.caFile, Device: device, IDTokenFile: tokenFile,
				TTL: ttl, NoAgent: noAgent, Targets: targets, Out: cmd.OutOrStdout(), Logger: g.logger(),
			})
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&device, "device", false, "use the device authorization flow (no browser on this host)")
	f.StringVar(&tokenFile, "id-token-file", "", "read an OIDC ID token from this file (CI)")
	f.DurationVar(&ttl, "ttl", 0, "certificate lifetime to ask for (the server clamps it)")
	f.BoolVar(&noAgent, "no-agent", false, "do not add the key to ssh-agent")
	f.StringSliceVar(&targets, "target", nil, "name these targets in the printed ssh_config snippet")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show who you are, your certificate's principals and expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := g.sshDir
			if dir == "" {
				var err error
				if dir, err = login.DefaultSSHDir(); err != nil {
					return err
				}
			}
			si, err := login.Status(dir, time.Now())
			if err != nil {
				return err
			}
			if err := login.WriteStatus(cmd.OutOrStdout(), si); err != nil {
				return err
			}
			if si.Expired {
				return errors.New("the certificate has expired; run jumpgate login")
			}
			return nil
		},
	}
}
