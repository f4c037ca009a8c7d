package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

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
					&cli.StringFlag{Name: "arch", Value: runtime.GOARCH, Usage: "target nodes' architecture (amd64, arm64; x86_64/aarch64 accepted); empty to skip"},
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
		return "", cli.Exit(fmt.Sprintf("image %s: want exactly one IMAGE argument (flags go before it)", c.Command.Name), exitUsage)
	}
	p := c.Args().First()
	if _, err := os.Stat(p); err != nil {
		return "", cli.Exit(fmt.Sprintf("image %s: %v", c.Command.Name, err), exitUsage)
	}
	return p, nil
}

func imageError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return cli.Exit(err.Error(), exitUsage)
	}
	return cli.Exit(err.Error(), exitFailure)
}

func imgWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func imageInspect(c *cli.Context) error {
	p, err := imageArg(c)
	if err != nil {
		return err
	}
	img, err := sif.Inspect(c.Context, p, sif.InspectOptions{HeadersOnly: c.Bool("headers-only")})
	if err != nil {
		return imageError(err)
	}
	w := c.App.Writer
	if c.Bool("json") {
		return imgWriteJSON(w, img)
	}
	h := img.Header
	fmt.Fprintf(w, "Image:        %s (%d bytes)\n", img.Path, img.FileSize)
	fmt.Fprintf(w, "ID:           %s\n", h.ID)
	fmt.Fprintf(w, "SIF version:  %s\nArch:         %s\n", h.Version, h.Arch)
	fmt.Fprintf(w, "Created:      %s\nModified:     %s\n", h.CreatedAt.Format("2006-01-02 15:04:05 MST"), h.ModifiedAt.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "Descriptors:  %d used, %d free, table at %d (%d bytes)\n", len(img.Descriptors), h.DescriptorsFree, h.DescriptorsOffset, h.DescriptorsSize)
	fmt.Fprintf(w, "Data:         %d bytes at offset %d\n\n", h.DataSize, h.DataOffset)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tLINK\tTYPE\tNAME\tOFFSET\tSIZE\tDETAIL")
	for _, d := range img.Descriptors {
		link := "-"
		if d.LinkedID != 0 {
			link = fmt.Sprint(d.LinkedID)
			if d.LinkedGroup {
				link = "group " + link
			}
		}
		group := "-"
		if d.GroupID != 0 {
			group = fmt.Sprint(d.GroupID)
		}
		detail := ""
		if d.FS != "" {
			detail = fmt.Sprintf("%s %s %s", d.FS, d.PartType, d.Arch)
		}
		name := d.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, group, link, d.Type, name, d.Offset, d.Size, detail)
	}
	tw.Flush()
	if img.Primary != nil {
		fmt.Fprintf(w, "\nPrimary partition: object %d, %s, %s, %d bytes at offset %d\n", img.Primary.ID, img.Primary.FS, img.Primary.Arch, img.Primary.Size, img.Primary.Offset)
	} else {
		fmt.Fprintln(w, "\nPrimary partition: none")
	}
	if len(img.Signatures) == 0 {
		fmt.Fprintln(w, "Signatures:   none")
	}
	for _, s := range img.Signatures {
		what := fmt.Sprintf("object %d", s.Signs)
		if s.LinkedGroup {
			what = fmt.Sprintf("group %d", s.Signs)
		}
		fmt.Fprintf(w, "Signature:    object %d signs %s, %s, key %s (not verified; see image verify)\n", s.ID, what, s.Hash, s.Fingerprint)
	}
	if md := img.Metadata; md != nil {
		fmt.Fprintf(w, "\nLabels (from %s):\n", md.Source)
		for _, k := range imgSortedKeys(md.Labels) {
			fmt.Fprintf(w, "  %s: %s\n", k, md.Labels[k])
		}
		for _, k := range imgSortedKeys(md.Environment) {
			fmt.Fprintf(w, "Environment %s:\n%s\n", k, imgIndent(md.Environment[k]))
		}
		if md.Runscript != "" {
			fmt.Fprintf(w, "Runscript:\n%s\n", imgIndent(md.Runscript))
		}
	}
	if img.Deffile != "" {
		fmt.Fprintf(w, "Definition file:\n%s\n", imgIndent(img.Deffile))
	}
	for _, warn := range img.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "gpuorch: warning: %s\n", warn)
	}
	return nil
}

func imgIndent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func imgSortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
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
		return imageError(err)
	}
	w := c.App.Writer
	if c.Bool("json") {
		if err := imgWriteJSON(w, rep); err != nil {
			return err
		}
	} else {
		for _, ch := range rep.Checks {
			mark := "ok  "
			if !ch.OK {
				mark = "FAIL"
			}
			where := ""
			if ch.Object != 0 {
				where += fmt.Sprintf(" object %d", ch.Object)
			}
			if ch.Offset != nil {
				where += fmt.Sprintf(" offset %d", *ch.Offset)
			}
			if ch.Inside != "" {
				where += " " + ch.Inside
			}
			if where != "" {
				where = " [" + strings.TrimSpace(where) + "]"
			}
			fmt.Fprintf(w, "%s %-9s %s%s\n", mark, ch.Name, ch.Detail, where)
		}
	}
	if !rep.OK {
		n := len(rep.Failures())
		return cli.Exit(fmt.Sprintf("%s: %d check(s) failed", p, n), exitFailure)
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
		return cli.Exit(err.Error(), exitUsage)
	}
	v, err := sif.Verify(c.Context, p, keys)
	if err != nil {
		return imageError(err)
	}
	w := c.App.Writer
	if c.Bool("json") {
		if err := imgWriteJSON(w, v); err != nil {
			return err
		}
	} else {
		for _, s := range v.Signatures {
			if s.OK {
				fmt.Fprintf(w, "ok   signature object %d by %s (%s): objects %v intact\n", s.Signature, s.Signer, s.Fingerprint, s.Objects)
			} else {
				fmt.Fprintf(w, "FAIL signature object %d: %s\n", s.Signature, s.Error)
			}
		}
		if v.Error != "" {
			fmt.Fprintf(w, "FAIL %s\n", v.Error)
		}
	}
	if !v.OK {
		return cli.Exit(fmt.Sprintf("%s: not verified", p), exitFailure)
	}
	return nil
}
