package sif

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/sylabs/sif/v2/pkg/integrity"
	ssif "github.com/sylabs/sif/v2/pkg/sif"
)

// SignatureResult is the verification outcome of one signature object.
type SignatureResult struct {
	Signature uint32 `json:"signature"` // signature object id
	// Fingerprint of the key that made a valid signature (hex).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Signer is the key's primary identity, e.g. "Test <t@example.org>".
	Signer string `json:"signer,omitempty"`
	// Objects are the data objects the signature covers and were found
	// intact.
	Objects []uint32 `json:"objects,omitempty"`
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
}

// Verification is Verify's result.
type Verification struct {
	Path       string            `json:"path"`
	OK         bool              `json:"ok"`
	Signatures []SignatureResult `json:"signatures"`
	// Error says why verification failed as a whole (unsigned image, no
	// keys, an object outside every group).
	Error string `json:"error,omitempty"`
}

// ReadKeyRing reads armored (or binary) PGP public keys from files, each
// within limitio.Config's limits.
func ReadKeyRing(paths ...string) (openpgp.EntityList, error) {
	var all openpgp.EntityList
	for _, p := range paths {
		b, err := limitio.ReadFile(p, limitio.Config.As("key file"))
		if err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
		var el openpgp.EntityList
		if strings.Contains(string(b), "-----BEGIN PGP") {
			el, err = openpgp.ReadArmoredKeyRing(strings.NewReader(string(b)))
		} else {
			el, err = openpgp.ReadKeyRing(strings.NewReader(string(b)))
		}
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", clip.String(p), err)
		}
		all = append(all, el...)
	}
	return all, nil
}

// Verify checks every PGP signature in the image at path against keys,
// hashing the signed objects. It fails for unsigned images, for signatures
// by keys not in the ring, and for objects changed after signing; each
// failure names the signature or object id. The error return is for I/O
// and load failures.
func Verify(ctx context.Context, path string, keys openpgp.KeyRing) (*Verification, error) {
	if _, err := limitio.Check(path, imageFile); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	return verify(ctx, path, f, st.Size(), keys)
}

func verify(ctx context.Context, path string, r io.ReaderAt, size int64, keys openpgp.KeyRing) (*Verification, error) {
	_, fi, err := load(path, readOnly{r}, size)
	if err != nil {
		return nil, err
	}
	defer fi.UnloadContainer()
	v := &Verification{Path: path, Signatures: []SignatureResult{}}
	if keys == nil {
		v.Error = "no public keys given"
		return v, nil
	}
	cb := func(r integrity.VerifyResult) bool {
		sr := SignatureResult{Signature: r.Signature().ID()}
		for _, d := range r.Verified() {
			sr.Objects = append(sr.Objects, d.ID())
		}
		if e := r.Entity(); e != nil {
			sr.Fingerprint = fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
			for name := range e.Identities {
				sr.Signer = name
				break
			}
		}
		if err := r.Error(); err != nil {
			sr.Error = describeIntegrityError(err, fi)
		} else {
			sr.OK = true
		}
		v.Signatures = append(v.Signatures, sr)
		return true // collect every signature's outcome, judge below
	}
	ver, err := integrity.NewVerifier(fi,
		integrity.OptVerifyWithKeyRing(keys),
		integrity.OptVerifyWithContext(ctx),
		integrity.OptVerifyCallback(cb))
	if err != nil {
		v.Error = describeIntegrityError(err, fi)
		return v, nil
	}
	if err := ver.Verify(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("verify %s: %w", path, ctx.Err())
		}
		v.Error = describeIntegrityError(err, fi)
		return v, nil
	}
	v.OK = len(v.Signatures) > 0
	for _, s := range v.Signatures {
		if !s.OK {
			v.OK = false
		}
	}
	if len(v.Signatures) == 0 {
		v.Error = "no signatures verified"
	}
	return v, nil
}

// describeIntegrityError adds where the library's errors point to.
func describeIntegrityError(err error, fi *ssif.FileImage) string {
	var oie *integrity.ObjectIntegrityError
	var die *integrity.DescriptorIntegrityError
	var snf *integrity.SignatureNotFoundError
	var snv *integrity.SignatureNotValidError
	where := func(id uint32) string {
		d, derr := fi.GetDescriptor(ssif.WithID(id))
		if derr != nil {
			return fmt.Sprintf("object %d", id)
		}
		return fmt.Sprintf("object %d (%s, %d bytes at offset %d)", id, d.DataType(), d.Size(), d.Offset())
	}
	switch {
	case errors.As(err, &oie):
		return fmt.Sprintf("%s was modified after signing: %v", where(oie.ID), err)
	case errors.As(err, &die):
		return fmt.Sprintf("descriptor of %s was modified after signing: %v", where(die.ID), err)
	case errors.As(err, &snf):
		if snf.IsGroup {
			return fmt.Sprintf("unsigned: no signature covers object group %d: %v", snf.ID, err)
		}
		return fmt.Sprintf("unsigned: no signature covers %s: %v", where(snf.ID), err)
	case errors.As(err, &snv):
		return fmt.Sprintf("signature %s does not verify with the given keys: %v", where(snv.ID), err)
	case errors.Is(err, integrity.ErrHeaderIntegrity):
		return fmt.Sprintf("global header (offset 0) was modified after signing: %v", err)
	}
	return err.Error()
}
