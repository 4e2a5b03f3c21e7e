package main

import (
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/forwarders/kube"
	"github.com/jumpgate/jumpgate/login"
)

func newKubeConfigCmd(g *globals) *cobra.Command {
	var port int
	var out string
	cmd := &cobra.Command{
		Use:   "kube-config TARGET [--port P] [-o FILE]",
		Short: "Write a kubeconfig context for a Kubernetes target reached through the bastion",
		Long: `Write or merge a context jumpgate-TARGET (server https://127.0.0.1:PORT, the
forwarder's CA inline, a placeholder token the forwarder ignores) into FILE, else
the first file of $KUBECONFIG, else ~/.kube/config, keeping every other entry.
Then keep the printed ssh -L line open while you use kubectl.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var caPEM []byte
			if err := g.call(cmd, "GET", "/v1/kube/ca", nil, &caPEM); err != nil {
				return err
			}
			home, _ := os.UserHomeDir()
			path := kube.KubeconfigPath(out, os.Getenv("KUBECONFIG"), home)
			if err := kube.WriteKubeconfig(path, args[0], port, caPEM); err != nil {
				return err
			}
			bastion := "<bastion>"
			if g.configFile == "" {
				dir := g.sshDir
				if dir == "" {
					dir, _ = login.DefaultSSHDir()
				}
				if _, _, saved, err := login.LoadIdentity(dir); err == nil && saved.SSHAddress != "" {
					bastion = saved.SSHAddress
					if h, p, err := net.SplitHostPort(saved.SSHAddress); err == nil {
						bastion = h
						if p != "22" {
							bastion = "-p " + p + " " + h
						}
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote context %s to %s\nkeep this open while you use kubectl --context %s:\n  %s\n",
				kube.ContextName(args[0]), path, kube.ContextName(args[0]), kube.SSHCommand(args[0], port, bastion))
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", kube.DefaultLocalPort, "local port of the ssh -L tunnel")
	cmd.Flags().StringVarP(&out, "output", "o", "", "kubeconfig file to write or merge into")
	return cmd
}
