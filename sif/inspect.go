package sif

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gpuorch/gpuorch/internal/limitio"
	ssif "github.com/sylabs/sif/v2/pkg/sif"
)

// Layout of the SIF global header (SIF spec 01, little endian). The library
// reads it too, but trusts the counts it finds: a header announcing 2^60
// descriptors makes it allocate them. We read the fixed part first and refuse
// what the file cannot hold, so a hostile or corrupt file costs nothing.
const (
	headerSize     = 128
	descriptorSize = 585 // binary.Size of the library's rawDescriptor
	offMagic       = 32
	offVersion     = 42
	offArch        = 45
	offDescrTotal  = 88
	offDescrOffset = 96
	offDescrSize   = 104
	offDataOffset  = 112
	offDataSize    = 120
	sifMagic       = "SIF_MAGIC"

	// maxDescriptors bounds the descriptor table; real images have < 10 and
	// the library's default capacity is 48.
	maxDescriptors = 1 << 16
	// maxMetadataSize bounds the small objects Inspect reads into memory
	// (definition file, inspect-metadata.json, files under /.singularity.d).
	maxMetadataSize = 16 << 20

	// InspectMetadataName is the name Apptainer and SingularityCE give the
	// generic JSON object holding labels, environment and runscript.
	InspectMetadataName = "inspect-metadata.json"
)

// Image is what Inspect learns about a SIF file.
type Image struct {
	Path        string       `json:"path"`
	FileSize    int64        `json:"file_size"`
	Header      Header       `json:"header"`
	Descriptors []Descriptor `json:"descriptors"`
	// Primary is the primary system partition, nil when the image has none.
	Primary *Descriptor `json:"primary,omitempty"`
	// Deffile is the definition file the image was built from ("" if none).
	Deffile string `json:"deffile,omitempty"`
	// Metadata holds labels, environment and runscript; nil when neither
	// inspect-metadata.json nor /.singularity.d could be read (or with
	// HeadersOnly).
	Metadata *Metadata `json:"metadata,omitempty"`
	// Signatures lists the signature objects (not verified; see Verify).
	Signatures []Signature `json:"signatures"`
	// Warnings are problems met while reading optional parts (a malformed
	// inspect-metadata.json, an unreadable squashfs); Validate turns the
	// serious ones into failures.
	Warnings []string `json:"warnings,omitempty"`
}

// Header is the SIF global header.
type Header struct {
	ID                string    `json:"id"`
	Version           string    `json:"version"`
	Arch              string    `json:"arch"` // primary architecture, Go naming (amd64, arm64)
	LaunchScript      string    `json:"launch_script"`
	CreatedAt         time.Time `json:"created_at"`
	ModifiedAt        time.Time `json:"modified_at"`
	DescriptorsTotal  int64     `json:"descriptors_total"`
	DescriptorsFree   int64     `json:"descriptors_free"`
	DescriptorsOffset int64     `json:"descriptors_offset"`
	DescriptorsSize   int64     `json:"descriptors_size"`
	DataOffset        int64     `json:"data_offset"`
	DataSize          int64     `json:"data_size"`
}

// Descriptor is one data object.
type Descriptor struct {
	ID       uint32 `json:"id"`
	Type     string `json:"type"` // e.g. "FS", "Def.FILE", "JSON.Generic", "Signature"
	Name     string `json:"name,omitempty"`
	GroupID  uint32 `json:"group_id,omitempty"`
	LinkedID uint32 `json:"linked_id,omitempty"`
	// LinkedGroup says LinkedID names an object group, not an object.
	LinkedGroup bool      `json:"linked_group,omitempty"`
	Offset      int64     `json:"offset"`
	Size        int64     `json:"size"`
	CreatedAt   time.Time `json:"created_at"`
	// Partition metadata, for partitions only.
	FS       string `json:"fs,omitempty"`        // "Squashfs", "Ext3", …
	PartType string `json:"part_type,omitempty"` // "*System" for the primary partition
	Arch     string `json:"arch,omitempty"`

	dataType ssif.DataType
	fsType   ssif.FSType
	partType ssif.PartType
}

// Signature is a signature object and what it claims (not verified).
type Signature struct {
	ID          uint32 `json:"id"`
	Hash        string `json:"hash,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // hex, empty for DSSE
	// Signs is the object group (LinkedGroup) or object it covers.
	Signs       uint32 `json:"signs"`
	LinkedGroup bool   `json:"linked_group"`
}

// Metadata is the image's labels, environment and runscript.
type Metadata struct {
	// Source is where they were read: "inspect-metadata.json" or
	// "squashfs:/.singularity.d".
	Source string            `json:"source"`
	Labels map[string]string `json:"labels,omitempty"`
	// Environment maps an environment script's name
	// (e.g. "90-environment.sh") to its contents.
	Environment map[string]string `json:"environment,omitempty"`
	Runscript   string            `json:"runscript,omitempty"`
}

// InspectOptions tune Inspect.
type InspectOptions struct {
	// HeadersOnly reads the global header and descriptors and nothing else
	// (no object data, no squashfs): the fast path.
	HeadersOnly bool
}

// Error is a problem with an image, located as precisely as possible.
type Error struct {
	Path   string // the image file
	Check  string // what was checked, e.g. "header", "bounds", "squashfs", "arch"
	Offset int64  // byte offset in the file, -1 when not applicable
	Object uint32 // descriptor id, 0 when not applicable
	Inside string // path inside the image, "" when not applicable
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	var b bytes.Buffer
	b.WriteString(e.Path)
	if e.Object != 0 {
		fmt.Fprintf(&b, ": object %d", e.Object)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %d", e.Offset)
	}
	if e.Inside != "" {
		fmt.Fprintf(&b, " (%s)", e.Inside)
	}
	fmt.Fprintf(&b, ": %s: %s", e.Check, e.Msg)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// imageFile is what an image path must name: a regular file, of any size
// (a device or a named pipe is refused before it is opened, as bad input).
var imageFile = limitio.Limits{What: "SIF image"}

// ErrNotSIF is wrapped by errors about files that are not SIF images at all.
var ErrNotSIF = errors.New("not a SIF image")

// Inspect reads the image at path, read-only. Files inside the squashfs
// (the /.singularity.d fallback) are read with unsquashfs when the image has
// no inspect-metadata.json object.
func Inspect(ctx context.Context, path string, opts InspectOptions) (*Image, error) {
	if _, err := limitio.Check(path, imageFile); err != nil {
		return nil, err
	}
	f, err := os.Open(path) // read-only: images often live on read-only mounts
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Path: path, Check: "file", Offset: -1, Msg: "not a regular file"}
	}
	img, fi, err := load(path, readOnly{f}, st.Size())
	if err != nil {
		return nil, err
	}
	defer fi.UnloadContainer()
	if !opts.HeadersOnly {
		readContents(ctx, img, fi, f, path)
	}
	return img, nil
}

// InspectBytes is Inspect on an image held in memory (tests, fuzzing); it
// does not look inside the squashfs.
func InspectBytes(name string, data []byte, opts InspectOptions) (*Image, error) {
	r := bytes.NewReader(data)
	img, fi, err := load(name, readOnly{r}, int64(len(data)))
	if err != nil {
		return nil, err
	}
	defer fi.UnloadContainer()
	if !opts.HeadersOnly {
		readContents(context.Background(), img, fi, r, "")
	}
	return img, nil
}

// readOnly adapts an io.ReaderAt to the library's ReadWriter; every write
// fails, so nothing we do can modify an image.
type readOnly struct{ io.ReaderAt }

var errReadOnly = errors.New("image opened read-only")

func (readOnly) Write([]byte) (int, error)                 { return 0, errReadOnly }
func (readOnly) Seek(int64, int) (int64, error)            { return 0, errReadOnly }
func (readOnly) Truncate(int64) error                      { return errReadOnly }
func (r readOnly) Close() error                            { return nil }
func (r readOnly) ReadAt(p []byte, off int64) (int, error) { return r.ReaderAt.ReadAt(p, off) }

// load checks the fixed header, then lets the library parse it, then checks
// that every object lies inside the file.
func load(path string, rw readOnly, size int64) (*Image, *ssif.FileImage, error) {
	perr := func(check string, off int64, format string, a ...any) error {
		return &Error{Path: path, Check: check, Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	if size < headerSize {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotSIF, perr("header", 0, "file is %d bytes, shorter than the %d-byte SIF header", size, headerSize))
	}
	var h [headerSize]byte
	if _, err := rw.ReadAt(h[:], 0); err != nil {
		return nil, nil, &Error{Path: path, Check: "header", Offset: 0, Msg: "cannot read", Err: err}
	}
	if string(h[offMagic:offMagic+len(sifMagic)]) != sifMagic {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotSIF, perr("header", offMagic, "magic %q, want %q", cstr(h[offMagic:offMagic+10]), sifMagic))
	}
	if v := cstr(h[offVersion : offVersion+3]); v != ssif.CurrentVersion.String() {
		return nil, nil, perr("header", offVersion, "SIF version %q, this reader supports %q", v, ssif.CurrentVersion.String())
	}
	le := binary.LittleEndian
	total := int64(le.Uint64(h[offDescrTotal:]))
	dOff := int64(le.Uint64(h[offDescrOffset:]))
	dSize := int64(le.Uint64(h[offDescrSize:]))
	if total < 0 || total > maxDescriptors {
		return nil, nil, perr("header", offDescrTotal, "descriptor count %d is out of range [0, %d]", total, maxDescriptors)
	}
	if dOff < headerSize || dSize < total*descriptorSize || dOff > size || dSize > size-dOff {
		return nil, nil, perr("bounds", dOff, "descriptor table [%d, +%d) for %d descriptors does not fit in the %d-byte file (truncated?)", dOff, dSize, total, size)
	}
	fi, err := ssif.LoadContainer(rw, ssif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return nil, nil, &Error{Path: path, Check: "header", Offset: 0, Msg: "cannot load", Err: err}
	}
	img := &Image{
		Path:     path,
		FileSize: size,
		Header: Header{
			ID:                fi.ID(),
			Version:           fi.Version(),
			Arch:              fi.PrimaryArch(),
			LaunchScript:      fi.LaunchScript(),
			CreatedAt:         fi.CreatedAt().UTC(),
			ModifiedAt:        fi.ModifiedAt().UTC(),
			DescriptorsTotal:  fi.DescriptorsTotal(),
			DescriptorsFree:   fi.DescriptorsFree(),
			DescriptorsOffset: fi.DescriptorsOffset(),
			DescriptorsSize:   fi.DescriptorsSize(),
			DataOffset:        fi.DataOffset(),
			DataSize:          fi.DataSize(),
		},
		Descriptors: []Descriptor{},
		Signatures:  []Signature{},
	}
	var berr error
	fi.WithDescriptors(func(d ssif.Descriptor) bool {
		desc := describe(d)
		if desc.Offset < 0 || desc.Size < 0 || desc.Offset > size || desc.Size > size-desc.Offset {
			berr = &Error{Path: path, Check: "bounds", Offset: desc.Offset, Object: desc.ID,
				Msg: fmt.Sprintf("%s object [%d, +%d) ends at %d, past the end of the %d-byte file (truncated?)",
					desc.Type, desc.Offset, desc.Size, desc.Offset+desc.Size, size)}
			return true
		}
		img.Descriptors = append(img.Descriptors, desc)
		if desc.dataType == ssif.DataSignature {
			s := Signature{ID: desc.ID, Signs: desc.LinkedID, LinkedGroup: desc.LinkedGroup}
			if ht, fp, err := d.SignatureMetadata(); err == nil {
				s.Hash = ht.String()
				s.Fingerprint = fmt.Sprintf("%X", fp)
			}
			img.Signatures = append(img.Signatures, s)
		}
		return false
	})
	if berr != nil {
		fi.UnloadContainer()
		return nil, nil, berr
	}
	if end := img.Header.DataOffset + img.Header.DataSize; img.Header.DataOffset < 0 || img.Header.DataSize < 0 || end < 0 || end > size {
		fi.UnloadContainer()
		return nil, nil, perr("bounds", img.Header.DataOffset, "data section [%d, +%d) ends past the end of the %d-byte file (truncated?)", img.Header.DataOffset, img.Header.DataSize, size)
	}
	for i := range img.Descriptors {
		if img.Descriptors[i].partType == ssif.PartPrimSys {
			img.Primary = &img.Descriptors[i]
			break
		}
	}
	return img, fi, nil
}

func describe(d ssif.Descriptor) Descriptor {
	lid, isGroup := d.LinkedID()
	desc := Descriptor{
		ID:          d.ID(),
		Type:        d.DataType().String(),
		Name:        d.Name(),
		GroupID:     d.GroupID(),
		LinkedID:    lid,
		LinkedGroup: isGroup,
		Offset:      d.Offset(),
		Size:        d.Size(),
		CreatedAt:   d.CreatedAt().UTC(),
		dataType:    d.DataType(),
	}
	if d.DataType() == ssif.DataPartition {
		if fs, pt, arch, err := d.PartitionMetadata(); err == nil {
			desc.FS, desc.PartType, desc.Arch = fs.String(), pt.String(), arch
			desc.fsType, desc.partType = fs, pt
		}
	}
	return desc
}

// readContents fills in the definition file and metadata; problems become
// warnings, because a missing label is not a broken image.
// file is the image's path, "" for in-memory images (no squashfs access).
func readContents(ctx context.Context, img *Image, fi *ssif.FileImage, r io.ReaderAt, file string) {
	if d, err := fi.GetDescriptor(ssif.WithDataType(ssif.DataDeffile)); err == nil {
		if b, err := readObject(r, d); err != nil {
			img.Warnings = append(img.Warnings, fmt.Sprintf("object %d (definition file): %v", d.ID(), err))
		} else {
			img.Deffile = string(b)
		}
	}
	if md, err := metadataFromJSON(fi, r); err != nil {
		img.Warnings = append(img.Warnings, err.Error())
	} else if md != nil {
		img.Metadata = md
		return
	}
	if file == "" || img.Primary == nil || img.Primary.fsType != ssif.FsSquash || !hasSquashMagic(r, img.Primary.Offset) {
		return
	}
	md, err := metadataFromSquashfs(ctx, squashFS{image: file, offset: img.Primary.Offset})
	if err != nil {
		img.Warnings = append(img.Warnings, fmt.Sprintf("object %d (primary partition): reading /.singularity.d: %v", img.Primary.ID, err))
		return
	}
	img.Metadata = md
}

func readObject(r io.ReaderAt, d ssif.Descriptor) ([]byte, error) {
	if d.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%d bytes, larger than the %d-byte limit for metadata", d.Size(), maxMetadataSize)
	}
	b := make([]byte, d.Size())
	if _, err := r.ReadAt(b, d.Offset()); err != nil && !(errors.Is(err, io.EOF) && len(b) == 0) {
		return nil, fmt.Errorf("read [%d, +%d): %w", d.Offset(), d.Size(), err)
	}
	return b, nil
}

// inspectMetadata is the shape Apptainer/SingularityCE write.
type inspectMetadata struct {
	Data struct {
		Attributes struct {
			Labels      map[string]string `json:"labels"`
			Environment map[string]string `json:"environment"`
			Runscript   string            `json:"runscript"`
			Deffile     string            `json:"deffile"`
		} `json:"attributes"`
	} `json:"data"`
}

func metadataFromJSON(fi *ssif.FileImage, r io.ReaderAt) (*Metadata, error) {
	ds, err := fi.GetDescriptors(ssif.WithDataType(ssif.DataGenericJSON))
	if err != nil {
		return nil, nil
	}
	for _, d := range ds {
		if d.Name() != InspectMetadataName {
			continue
		}
		b, err := readObject(r, d)
		if err != nil {
			return nil, fmt.Errorf("object %d (%s): %w", d.ID(), InspectMetadataName, err)
		}
		var m inspectMetadata
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("object %d (%s) at offset %d: %w", d.ID(), InspectMetadataName, d.Offset(), err)
		}
		a := m.Data.Attributes
		return &Metadata{Source: InspectMetadataName, Labels: a.Labels, Environment: a.Environment, Runscript: a.Runscript}, nil
	}
	return nil, nil
}

func hasSquashMagic(r io.ReaderAt, off int64) bool {
	var m [4]byte
	_, err := r.ReadAt(m[:], off)
	return err == nil && string(m[:]) == SquashfsMagic
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// baseName is the image file name without directory and .sif extension.
func baseName(path string) string {
	b := filepath.Base(path)
	if ext := filepath.Ext(b); ext == ".sif" || ext == ".SIF" {
		b = b[:len(b)-len(ext)]
	}
	return b
}
