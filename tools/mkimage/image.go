package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// imageInputs are everything the image is made of; the same inputs give the same image digest.
type imageInputs struct {
	Spec      imageSpec
	RootfsGz  string // the root file system, a gzip-compressed tar (see gzipFile)
	Binary    []byte // the static krsync binary
	Version   string // org.opencontainers.image.version and the tag
	Revision  string // org.opencontainers.image.revision, left out when empty
	Arch      string // GOARCH of the binary, the config's architecture
	Created   time.Time
	RootfsCmd string // how the root file system was made, for the image's history
}

// buildImage assembles the OCI image: the root file system as one layer, the binary as a
// second one (so that images of two versions share the first), and the config.
func buildImage(in imageInputs) (v1.Image, error) {
	base, err := tarball.LayerFromFile(in.RootfsGz, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("root file system layer: %w", err)
	}
	binTar, err := binaryLayerTar(in.Spec.BinaryPath, in.Binary, in.Created)
	if err != nil {
		return nil, err
	}
	bin, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(binTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: in.Created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: in.RootfsCmd, Comment: "Debian " + in.Spec.Suite + " with " + strings.Join(in.Spec.Packages, ", "),
		}},
		mutate.Addendum{Layer: bin, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "COPY krsync " + in.Spec.BinaryPath, Comment: "krsync " + in.Version,
		}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = in.Arch, "linux", created
	cf.Config = v1.Config{
		Entrypoint: in.Spec.Entrypoint,
		User:       in.Spec.User(),
		Env:        in.Spec.Env(),
		Labels:     labels(in),
	}
	return mutate.ConfigFile(img, cf)
}

// labels are the OCI annotations of the image config (image-spec annotations.md).
func labels(in imageInputs) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "krsync",
		"org.opencontainers.image.description": "krsync on Debian " + in.Spec.Suite + " with " + strings.Join(in.Spec.Packages, ", "),
		"org.opencontainers.image.version":     in.Version,
		"org.opencontainers.image.source":      in.Spec.Source,
		"org.opencontainers.image.created":     in.Created.UTC().Format(time.RFC3339),
	}
	if in.Revision != "" {
		l["org.opencontainers.image.revision"] = in.Revision
	}
	return l
}

// binaryLayerTar is the gzip-compressed tar of the second layer: the binary alone, owned by
// root, mode 0755, its mtime the build's. Its parent directories come from the first layer.
func binaryLayerTar(binaryPath string, binary []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(binaryPath, "/"),
		Mode:     0o755,
		Size:     int64(len(binary)),
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gzipFile compresses src into dst with Go's gzip, which writes neither a name nor a time into
// the header: the same tar gives the same bytes with the same Go release.
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return fmt.Errorf("gzip %s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
