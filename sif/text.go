package sif

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// timeLayout is how the text renderings show the header's times.
const timeLayout = "2006-01-02 15:04:05 MST"

// WriteText writes the inspection for people: the header, a table of the
// data objects, the primary partition, the signatures (not verified), labels,
// environment, runscript and definition file. Warnings are not written:
// the caller decides where they go.
func (img *Image) WriteText(w io.Writer) error {
	var b bytes.Buffer
	h := img.Header
	fmt.Fprintf(&b, "Image:        %s (%d bytes)\n", img.Path, img.FileSize)
	fmt.Fprintf(&b, "ID:           %s\n", h.ID)
	fmt.Fprintf(&b, "SIF version:  %s\nArch:         %s\n", h.Version, h.Arch)
	fmt.Fprintf(&b, "Created:      %s\nModified:     %s\n", h.CreatedAt.Format(timeLayout), h.ModifiedAt.Format(timeLayout))
	fmt.Fprintf(&b, "Descriptors:  %d used, %d free, table at %d (%d bytes)\n", len(img.Descriptors), h.DescriptorsFree, h.DescriptorsOffset, h.DescriptorsSize)
	fmt.Fprintf(&b, "Data:         %d bytes at offset %d\n\n", h.DataSize, h.DataOffset)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
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
	if p := img.Primary; p != nil {
		fmt.Fprintf(&b, "\nPrimary partition: object %d, %s, %s, %d bytes at offset %d\n", p.ID, p.FS, p.Arch, p.Size, p.Offset)
	} else {
		fmt.Fprintln(&b, "\nPrimary partition: none")
	}
	if len(img.Signatures) == 0 {
		fmt.Fprintln(&b, "Signatures:   none")
	}
	for _, s := range img.Signatures {
		what := fmt.Sprintf("object %d", s.Signs)
		if s.LinkedGroup {
			what = fmt.Sprintf("group %d", s.Signs)
		}
		fmt.Fprintf(&b, "Signature:    object %d signs %s, %s, key %s (not verified; see image verify)\n", s.ID, what, s.Hash, s.Fingerprint)
	}
	if md := img.Metadata; md != nil {
		fmt.Fprintf(&b, "\nLabels (from %s):\n", md.Source)
		for _, k := range sortedKeys(md.Labels) {
			fmt.Fprintf(&b, "  %s: %s\n", k, md.Labels[k])
		}
		for _, k := range sortedKeys(md.Environment) {
			fmt.Fprintf(&b, "Environment %s:\n%s\n", k, indent(md.Environment[k]))
		}
		if md.Runscript != "" {
			fmt.Fprintf(&b, "Runscript:\n%s\n", indent(md.Runscript))
		}
	}
	if img.Deffile != "" {
		fmt.Fprintf(&b, "Definition file:\n%s\n", indent(img.Deffile))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteText writes one line per check: ok or FAIL, the check's name, what
// it found and, for a failure, where (object, offset, path inside).
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, ch := range r.Checks {
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
		fmt.Fprintf(&b, "%s %-9s %s%s\n", mark, ch.Name, ch.Detail, where)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteText writes one line per signature (its signer and the objects found
// intact, or why it failed) and, when verification failed as a whole, why.
func (v *Verification) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, s := range v.Signatures {
		if s.OK {
			fmt.Fprintf(&b, "ok   signature object %d by %s (%s): objects %v intact\n", s.Signature, s.Signer, s.Fingerprint, s.Objects)
		} else {
			fmt.Fprintf(&b, "FAIL signature object %d: %s\n", s.Signature, s.Error)
		}
	}
	if v.Error != "" {
		fmt.Fprintf(&b, "FAIL %s\n", v.Error)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// indent indents every line of s by two spaces (trailing newlines dropped).
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
