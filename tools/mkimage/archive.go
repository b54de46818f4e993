package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The archive is an OCI image layout (image-spec image-layout.md: oci-layout, index.json,
// blobs/sha256/) in a tar, plus the manifest.json of `docker save`, whose Config and Layers
// point at the same blobs. That is the shape `docker save` writes since Docker 25, so:
//   - skopeo (oci-archive:), podman load, ctr images import and Docker 25+ read the OCI layout;
//   - Docker before 25 and skopeo's docker-archive: read manifest.json.
//
// The layers stay gzip-compressed in both views; docker load decompresses them.
// go-containerregistry's tarball.Write writes only the manifest.json view and layout.Write
// only a directory, hence this small writer.

// ociLayout is the content of the oci-layout file.
const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

// dockerManifestEntry is one image of `docker save`'s manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeArchive writes img as repository:tag to w. Every entry gets mtime, owner root and mode
// 0644 (0755 for directories), so the archive's bytes depend on the image alone.
func writeArchive(w io.Writer, img v1.Image, repository, tag string, mtime time.Time) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	ref := repository + ":" + tag
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			// The two names Docker 25's save writes: containerd's full reference, and the
			// tag that skopeo's oci-archive:FILE:TAG selects.
			Annotations: map[string]string{
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	entry := dockerManifestEntry{Config: blobPath(configName), RepoTags: []string{ref}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		entry.Layers = append(entry.Layers, blobPath(d))
	}
	dockerJSON, err := json.Marshal([]dockerManifestEntry{entry})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	file := func(name string, size int64, body io.Reader) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, body)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
		}
		return nil
	}
	bytesFile := func(name string, b []byte) error { return file(name, int64(len(b)), bytes.NewReader(b)) }
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blobPath(d), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		body []byte
	}{
		{blobPath(configName), config},
		{blobPath(digest), manifest},
		{"index.json", indexJSON},
		{"manifest.json", dockerJSON},
		{"oci-layout", []byte(ociLayout)},
	} {
		if err := bytesFile(f.name, f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
