package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
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
						return errkind.Invalidf("credentials add: want NAME")
					}
					var secret string
					if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
						fmt.Fprint(c.App.ErrWriter, "secret: ")
						b, err := term.ReadPassword(fd)
						fmt.Fprintln(c.App.ErrWriter)
						if err != nil {
							return err
						}
						secret = string(b)
					} else {
						line, err := limitio.NewLineReader(c.Context, c.App.Reader, "<stdin>", limitio.Small.As("secret")).ReadLine()
						if err != nil && (line == "" || err != io.EOF) {
							return errkind.Invalidf("credentials add: no secret on stdin: %w", err)
						}
						secret = line
					}
					secret = strings.TrimRight(secret, "\r\n")
					store := llmbench.DefaultCredentials()
					if err := store.Add(c.Args().First(), secret); err != nil {
						return err
					}
					fmt.Fprintf(c.App.ErrWriter, "stored credential %q in %s\n", c.Args().First(), store.Path)
					return nil
				},
			},
			{
				Name: "list", Usage: "list credential names (never secrets)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					infos, err := llmbench.DefaultCredentials().List()
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if infos == nil {
							infos = []llmbench.CredentialInfo{}
						}
						return printJSON(c.App.Writer, infos)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
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
						return errkind.Invalidf("credentials rm: want NAME")
					}
					return llmbench.DefaultCredentials().Remove(c.Args().First())
				},
			},
		},
	})
}
