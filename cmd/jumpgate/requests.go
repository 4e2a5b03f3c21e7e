package main

import (
	"errors"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jumpgate/jumpgate/storage"
)

func newRequestCmd(g *globals) *cobra.Command {
	var target, reason string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "request --target T --duration D --reason R",
		Short: "Ask for just-in-time access to a target",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" || duration <= 0 || reason == "" {
				return errors.New("--target, --duration and --reason are required")
			}
			var r storage.Request
			if err := g.call(cmd, "POST", "/v1/requests", map[string]string{"target": target, "duration": duration.String(), "reason": reason}, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "request %s created; an approver runs: jumpgate approve %s\n", r.ID, r.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "target name")
	cmd.Flags().DurationVar(&duration, "duration", 0, "how long the access should last")
	cmd.Flags().StringVar(&reason, "reason", "", "why (shown to approvers)")
	return cmd
}

func newRequestsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "requests", Short: "Access requests and held operations"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List requests (approvers and auditors see all, others their own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rs []storage.Request
			if err := g.call(cmd, "GET", "/v1/requests", nil, &rs); err != nil {
				return err
			}
			if asJSON {
				if rs == nil {
					rs = []storage.Request{}
				}
				return printJSON(cmd.OutOrStdout(), rs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tUSER\tTARGET\tSTATUS\tCREATED\tWHAT")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Kind, r.User, r.Target, r.Status, r.CreatedAt.Local().Format(time.DateTime), r.What)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	c.AddCommand(list)
	return c
}

func newApproveCmd(g *globals, approve bool) *cobra.Command {
	var reason string
	use, short, verb := "approve ID", "Approve a request or a held operation (approvers)", "approve"
	if !approve {
		use, short, verb = "deny ID --reason R", "Deny a request or a held operation (approvers)", "deny"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !approve && reason == "" {
				return errors.New("deny needs --reason")
			}
			var r storage.Request
			if err := g.call(cmd, "POST", "/v1/requests/"+url.PathEscape(args[0])+"/"+verb, map[string]string{"reason": reason}, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "request %s %s\n", r.ID, r.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	return cmd
}
