package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/sif"
)

func init() {
	register(&cli.Command{
		Name:  "image",
		Usage: "inspect, validate and verify Apptainer/Singularity SIF images (read-only)",
		Description: `Training jobs run inside SIF images. These commands read an image without
modifying it (it is opened read-only, so images on read-only mounts work)
and say precisely what is wrong with a broken one: the check, the byte
offset, the data object id, the path inside the image. See docs/images.md.`,
		Subcommands: []*cli.Command{
			{
				Name:      "inspect",
				Usage:     "show an image's header, data objects, primary partition, definition file, labels and signatures",
				ArgsUsage: "IMAGE.sif",
				Description: `Labels, environment and runscript come from the image's inspect-metadata.json
object, or, when it has none (older builds), from /.singularity.d inside the
squashfs (read with unsquashfs). --headers-only reads just the header and the
descriptor table: it is instant on images of any size.

Examples:
  gpuorch image inspect /shared/images/metaseq_f7ffa5f_2306.sif
  gpuorch image inspect --json metaseq.sif | jq '.metadata.labels'`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the inspection as JSON"},
					&cli.BoolFlag{Name: "headers-only", Usage: "read the header and descriptors only (no object data)"},
				},
				Action: imageInspect,
			},
			{
				Name:      "validate",
				Usage:     "check that an image is whole and fits the job: partition, squashfs, architecture, version, paths",
				ArgsUsage: "IMAGE.sif",
				Description: `Checks, in order: every data object lies inside the file (catches truncated
copies, which the SIF library itself accepts), a squashfs primary partition
exists, the squashfs magic "hsqs" is at its offset, its architecture is the
target nodes' (--arch), the image carries the expected version (--version,
matched against a version label or the file name), the --require'd paths
exist inside it, and (--signed) it has a signature object.

Examples:
  gpuorch image validate --version f7ffa5f_2306 /shared/images/metaseq_f7ffa5f_2306.sif
  gpuorch image validate --arch x86_64 --require /opt/metaseq/train_7.5.sh --json img.sif

Exit codes: 0 valid, 1 a check failed, 2 no such file or bad flags.`,
				Flags: []cli.Flag{
					cliargs.Choice(&cli.StringFlag{Name: "arch", Value: runtime.GOARCH, Usage: "target nodes' architecture (amd64, arm64; x86_64/aarch64 accepted); empty to skip"}, append([]string{""}, sif.ArchNames()...)...),
					&cli.StringFlag{Name: "version", Usage: "expected image version, e.g. f7ffa5f_2306"},
					&cli.StringSliceFlag{Name: "require", Usage: "`PATH` that must exist inside the image (repeatable)"},
					&cli.BoolFlag{Name: "signed", Usage: "fail when the image has no signature (use verify to check it)"},
					&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
				},
				Action: imageValidate,
			},
			{
				Name:      "verify",
				Usage:     "verify an image's PGP signatures against public keys",
				ArgsUsage: "IMAGE.sif",
				Description: `Hashes every signed data object and checks each signature against the given
armored public keys (as exported by 'apptainer key export' or 'gpg --export
--armor'). Fails for unsigned images, signatures by keys not given, and
objects modified after signing, naming the object.

Examples:
  gpuorch image verify --key team.asc /shared/images/metaseq_f7ffa5f_2306.sif

Exit codes: 0 verified, 1 not verified, 2 no such file, unreadable key or bad flags.`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "key", Usage: "public key `FILE` (armored or binary; repeatable)", Required: true},
					&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
				},
				Action: imageVerify,
			},
		},
	})
}

func imageArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", errkind.Invalidf("image %s: want exactly one IMAGE argument", c.Command.Name)
	}
	p := c.Args().First()
	if _, err := os.Stat(p); err != nil {
		return "", errkind.Invalidf("image %s: %w", c.Command.Name, err)
	}
	return p, nil
}

// imageErr gives an error reading an image its kind: a file that is not
// there or not readable is bad input; a broken image is a failure.
func imageErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return errkind.Invalid(err)
	}
	return err
}

func imageInspect(c *cli.Context) error {
	p, err := imageArg(c)
	if err != nil {
		return err
	}
	img, err := sif.Inspect(c.Context, p, sif.InspectOptions{HeadersOnly: c.Bool("headers-only")})
	if err != nil {
		return imageErr(err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, img)
	}
	if err := img.WriteText(c.App.Writer); err != nil {
		return err
	}
	for _, warn := range img.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "gpuorch: warning: %s\n", warn)
	}
	return nil
}

func imageValidate(c *cli.Context) error {
	p, err := imageArg(c)
	if err != nil {
		return err
	}
	rep, err := sif.Validate(c.Context, p, sif.ValidateOptions{
		Arch: c.String("arch"), Version: c.String("version"),
		RequiredPaths: c.StringSlice("require"), RequireSigned: c.Bool("signed"),
	})
	if err != nil {
		return imageErr(err)
	}
	if err := printJSONOrText(c, rep, rep.WriteText); err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("%s: %d check(s) failed", p, len(rep.Failures()))
	}
	return nil
}

func imageVerify(c *cli.Context) error {
	p, err := imageArg(c)
	if err != nil {
		return err
	}
	keys, err := sif.ReadKeyRing(c.StringSlice("key")...)
	if err != nil {
		return errkind.Invalid(err)
	}
	v, err := sif.Verify(c.Context, p, keys)
	if err != nil {
		return imageErr(err)
	}
	if err := printJSONOrText(c, v, v.WriteText); err != nil {
		return err
	}
	if !v.OK {
		return fmt.Errorf("%s: not verified", p)
	}
	return nil
}
