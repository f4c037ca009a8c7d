package main

import (
	"io"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/urfave/cli/v2"
)

// registryCmd is `gpuorch bench clusters|models|datasets add|list|show|remove`
// over llmbench's registries ($GPUORCH_HOME/registry; docs/bench.md).
func registryCmd(kind llmbench.RegistryKind, what, addArgs string, addFlags ...cli.Flag) *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	withID := func(f func(*cli.Context, string) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errkind.Invalidf("bench %s %s: want one ID", kind, c.Command.Name)
			}
			return f(c, c.Args().First())
		}
	}
	return &cli.Command{Name: string(kind), Usage: what + " that workflow payloads name by id", Subcommands: []*cli.Command{
		{Name: "add", Usage: "register one (checked first); --id keeps an id the payloads already use", ArgsUsage: addArgs,
			Flags: append([]cli.Flag{jsonFlag, &cli.StringFlag{Name: "id", Usage: "the id (default: a new UUID)"}, &cli.StringFlag{Name: "name", Usage: "a name for people"}}, addFlags...),
			Action: func(c *cli.Context) error {
				e, err := llmbench.DefaultRegistry().Add(c.Context, kind, llmbench.AddOptions{ID: c.String("id"), Name: c.String("name"), Args: c.Args().Slice(), Nodes: c.StringSlice("node")})
				if err != nil {
					return err
				}
				return printJSONOrText(c, e, e.WriteText)
			}},
		{Name: "list", Usage: "list them", Flags: []cli.Flag{jsonFlag}, Action: func(c *cli.Context) error {
			es, err := llmbench.DefaultRegistry().List(kind)
			if err != nil {
				return err
			}
			return printJSONOrText(c, es, func(w io.Writer) error { return llmbench.WriteEntries(w, es) })
		}},
		{Name: "show", Usage: "print one", ArgsUsage: "ID", Flags: []cli.Flag{jsonFlag}, Action: withID(func(c *cli.Context, id string) error {
			e, err := llmbench.DefaultRegistry().Get(kind, id)
			if err != nil {
				return errkind.Invalid(err)
			}
			return printJSONOrText(c, e, e.WriteText)
		})},
		{Name: "remove", Aliases: []string{"rm"}, Usage: "forget one", ArgsUsage: "ID", Action: withID(func(c *cli.Context, id string) error {
			return llmbench.DefaultRegistry().Remove(kind, id)
		})},
	}}
}
