package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/atomicfile"
	"github.com/spf13/cobra"
)

func newCACmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "Certificate authority: public keys, host certificates, revocation"}
	c.AddCommand(newCAPubkeyCmd(g), newSignHostCmd(g), newRevokeCmd(g), newKRLCmd(g))
	return c
}

func newCAPubkeyCmd(g *globals) *cobra.Command {
	var user, host bool
	cmd := &cobra.Command{
		Use:   "pubkey --user|--host",
		Short: "Print a CA public key in authorized_keys format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == host {
				return errors.New("give exactly one of --user or --host")
			}
			path := "/v1/ca/user"
			if host {
				path = "/v1/ca/host"
			}
			return g.call(cmd, "GET", path, nil, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&user, "user", false, "the user CA (TrustedUserCAKeys on targets)")
	cmd.Flags().BoolVar(&host, "host", false, "the host CA (@cert-authority in known_hosts)")
	return cmd
}

func writeOut(cmd *cobra.Command, file string, b []byte, mode os.FileMode) error {
	if file == "" || file == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	return atomicfile.Write(file, b, mode)
}

func newSignHostCmd(g *globals) *cobra.Command {
	var principals []string
	var out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "sign-host --principals a,b KEY.pub",
		Short: "Sign a host certificate for a target or the bastion (admins)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(principals) == 0 {
				return errors.New("--principals is required")
			}
			pub, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var res struct {
				Certificate string `json:"certificate"`
			}
			body := map[string]any{"public_key": strings.TrimSpace(string(pub)), "principals": principals}
			if ttl > 0 {
				body["ttl"] = ttl.String()
			}
			if err := g.call(cmd, "POST", "/v1/ca/host-certificates", body, &res); err != nil {
				return err
			}
			return writeOut(cmd, out, []byte(res.Certificate+"\n"), 0o644)
		},
	}
	cmd.Flags().StringSliceVar(&principals, "principals", nil, "host names the certificate is valid for")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the certificate to FILE instead of stdout")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "certificate lifetime (default 90 days)")
	return cmd
}

func newRevokeCmd(g *globals) *cobra.Command {
	var serial uint64
	var keyID, reason string
	cmd := &cobra.Command{
		Use:   "revoke --serial N | --key-id ID",
		Short: "Revoke certificates by serial or exact key id (admins)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (serial == 0) == (keyID == "") {
				return errors.New("give exactly one of --serial or --key-id")
			}
			if err := g.call(cmd, "POST", "/v1/ca/revoke", map[string]any{"serial": serial, "key_id": keyID, "reason": reason}, nil); err != nil {
				return err
			}
			if serial != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked serial %d\n", serial)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked key id %q\n", keyID)
			}
			return nil
		},
	}
	cmd.Flags().Uint64Var(&serial, "serial", 0, "certificate serial")
	cmd.Flags().StringVar(&keyID, "key-id", "", "certificate key id (exact match)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log)")
	return cmd
}

func newKRLCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "krl [-o FILE]",
		Short: "Write the OpenSSH KRL for sshd's RevokedKeys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b []byte
			if err := g.call(cmd, "GET", "/v1/krl", nil, &b); err != nil {
				return err
			}
			return writeOut(cmd, out, b, 0o644)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the KRL to FILE instead of stdout")
	return cmd
}
