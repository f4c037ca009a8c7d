package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func init() {
	register(&cli.Command{
		Name:  "credentials",
		Usage: "secrets of cloud model endpoints, referenced by name from benchmark specs",
		Description: `Credentials are stored in a 0600 JSON file ($GPUORCH_CREDENTIALS, default
~/.config/gpuorch/credentials.json; a file readable by others is refused), or
given in the environment as GPUORCH_CREDENTIAL_<NAME> (upper-cased, other
characters as '_'), which wins. A spec names the credential (model.credential);
the secret reaches the load generator only through that environment variable,
never a script, manifest, log or metric.

  printf '%s' "$API_KEY" | gpuorch credentials add openai-prod
  gpuorch credentials list
  gpuorch credentials rm openai-prod`,
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "store a credential; the secret is read from stdin (hidden on a terminal)", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if c.Args().Len() != 1 {
						return cli.Exit("credentials add: want NAME", exitUsage)
					}
					var secret string
					if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
						fmt.Fprint(os.Stderr, "secret: ")
						b, err := term.ReadPassword(fd)
						fmt.Fprintln(os.Stderr)
						if err != nil {
							return cli.Exit(err.Error(), exitFailure)
						}
						secret = string(b)
					} else {
						line, err := bufio.NewReader(os.Stdin).ReadString('\n')
						if err != nil && line == "" {
							return cli.Exit("credentials add: no secret on stdin", exitUsage)
						}
						secret = line
					}
					secret = strings.TrimRight(secret, "\r\n")
					if err := credentialStore().Add(c.Args().First(), secret); err != nil {
						return credExit(err)
					}
					fmt.Fprintf(os.Stderr, "stored credential %q in %s\n", c.Args().First(), credentialStore().Path)
					return nil
				},
			},
			{
				Name: "list", Usage: "list credential names (never secrets)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					infos, err := credentialStore().List()
					if err != nil {
						return credExit(err)
					}
					if c.Bool("json") {
						if infos == nil {
							infos = []llmbench.CredentialInfo{}
						}
						return printJSON(infos)
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tSOURCE\tADDED\tENV")
					for _, i := range infos {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, i.Source, i.Added.Format("2006-01-02 15:04"), llmbench.CredentialEnv(i.Name))
					}
					return tw.Flush()
				},
			},
			{
				Name: "rm", Usage: "delete a credential", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if c.Args().Len() != 1 {
						return cli.Exit("credentials rm: want NAME", exitUsage)
					}
					return credExit(credentialStore().Remove(c.Args().First()))
				},
			},
		},
	})
}

func credExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, llmbench.ErrLoosePerms):
		return cli.Exit(err.Error(), exitUsage)
	}
	return cli.Exit(err.Error(), exitFailure)
}
