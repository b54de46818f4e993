package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"golang.org/x/sys/unix"
)

// EnvImageTest set to 1 runs TestImageArchive (`make image-test`). It is not part of `make
// test`: it runs mmdebstrap twice against Debian's mirror, a minute or more each here, and
// needs mmdebstrap and skopeo (scripts/install-image-deps), which `make test` does not install.
const EnvImageTest = "KRSYNC_IMAGE_TEST"

// testEpoch is the SOURCE_DATE_EPOCH of the test builds.
const testEpoch = 1700000000

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveKrsync()
	os.Exit(code)
}

// TestImageArchive builds the image twice from the tree's krsync, as `make image` does, and
// checks: the two archives are the same bytes (reproducible); the archive is a valid OCI image
// layout and a valid `docker save` archive, read here by a reader that shares no code with
// the writer (and by skopeo through both views); its config has the Dockerfile's entrypoint,
// user and PATH and the OCI labels; its layers, extracted in order, are a root file system in
// which the entrypoint, run as the image's user with the image's PATH, copies a tree with the
// image's rsync.
func TestImageArchive(t *testing.T) {
	if os.Getenv(EnvImageTest) != "1" {
		t.Skip("SKIPPING the image build test (two mmdebstrap runs, 1-2.5 min): run it with `make image-test` or " + EnvImageTest + "=1")
	}
	if os.Geteuid() != 0 {
		testbin.SkipOrFail(t, "the image test needs root: mmdebstrap --mode=root, chroot, files of the image's user")
	}
	testbin.Program(t, "mmdebstrap")
	tarProg := testbin.Program(t, "tar")
	requireMirror(t, defaultSpec.Suite)

	dir := t.TempDir()
	binary := testbin.Krsync(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var results [2]buildResult
	var archives [2]string
	for i := range results {
		archives[i] = filepath.Join(dir, fmt.Sprintf("image%d.oci.tar", i))
		opts, err := parseFlags([]string{
			"-binary", binary, "-version", "imagetest", "-revision", "0123abc",
			"-source-date-epoch", strconv.Itoa(testEpoch), "-out", archives[i],
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if results[i], err = build(ctx, defaultSpec, opts); err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
		t.Logf("build %d: %v, %s, %d bytes, in %v", i+1, archives[i], results[i].Digest, results[i].ArchiveSize, time.Since(start).Round(time.Second))
	}

	img := readArchive(t, archives[0])
	if results[0] != results[1] {
		explainDifference(t, img, readArchive(t, archives[1]), results)
	}
	if got := "sha256:" + img.manifestDigest; got != results[0].Digest {
		t.Errorf("index.json names manifest %s; build printed %s", got, results[0].Digest)
	}
	checkConfig(t, img)

	root := filepath.Join(dir, "rootfs")
	extractLayers(t, tarProg, img, root)
	checkRootfs(t, root)
	runInImage(t, img, root)
	checkWithSkopeo(t, archives[0], img)
	checkUnpackArchive(ctx, t, archives[0], binary)
}

// checkUnpackArchive: -rootfs-dir -from-archive, which the test kubelet runs an archive with,
// gives the image's root file system (its krsync layer included) and its config.
func checkUnpackArchive(ctx context.Context, t *testing.T, archive, binary string) {
	t.Helper()
	manifest, err := unpackArchive(ctx, defaultSpec, archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var u Unpacked
	b, err := os.ReadFile(manifest)
	if err == nil {
		err = json.Unmarshal(b, &u)
	}
	if err != nil {
		t.Fatal(err)
	}
	if u.User != defaultSpec.User() || strings.Join(u.Entrypoint, " ") != strings.Join(defaultSpec.Entrypoint, " ") || u.BinaryPath != defaultSpec.BinaryPath {
		t.Errorf("unpacked image.json %+v: want the spec's user, entrypoint and binary path", u)
	}
	want, err1 := os.Stat(binary)
	got, err2 := os.Stat(filepath.Join(u.Rootfs, u.BinaryPath))
	if err1 != nil || err2 != nil || got.Size() != want.Size() {
		t.Errorf("unpacked %s: %v %v; want the binary layer's krsync", u.BinaryPath, err2, err1)
	}
}

// requireMirror skips (fails under CI=true) when Debian's mirror does not answer.
func requireMirror(t *testing.T, suite string) {
	t.Helper()
	url := "http://deb.debian.org/debian/dists/" + suite + "/InRelease"
	client := http.Client{Timeout: 15 * time.Second}
	resp, err := client.Head(url)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
	}
	if err != nil {
		testbin.SkipOrFail(t, "Debian's mirror is unreachable, mmdebstrap cannot build the image: "+err.Error())
	}
}

// Independent of go-containerregistry: the OCI image-spec and `docker save` formats as
// plain structs.
type (
	descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	}
	ociIndex struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}
	ociManifest struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}
	ociConfig struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Created      string `json:"created"`
		Config       struct {
			User       string            `json:"User"`
			Env        []string          `json:"Env"`
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			Created   string `json:"created"`
			CreatedBy string `json:"created_by"`
		} `json:"history"`
	}
	dockerSaveEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
)

// archiveImage is an archive as read back: its files, and the image they describe.
type archiveImage struct {
	files          map[string]string // archive path -> file on disk
	manifestDigest string            // hex
	manifest       ociManifest
	config         ociConfig
	layerFiles     []string // on disk, in order
}

// readArchive unpacks an archive and checks its structure: the OCI layout (oci-layout,
// index.json, every blob named by its sha256 and size) and manifest.json pointing at the same
// config and layers in the same order, with the image's name.
func readArchive(t *testing.T, archive string) archiveImage {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := archiveImage{files: map[string]string{}}
	tr := tar.NewReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || strings.Contains(hdr.Name, "..") || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Fatalf("%s: unexpected entry %q type %c uid %d gid %d", archive, hdr.Name, hdr.Typeflag, hdr.Uid, hdr.Gid)
		}
		if _, dup := img.files[hdr.Name]; dup {
			t.Fatalf("%s: %s twice", archive, hdr.Name)
		}
		out := filepath.Join(dir, strconv.Itoa(i))
		w, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		if _, err := io.Copy(io.MultiWriter(w, sum), tr); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if hex, ok := strings.CutPrefix(hdr.Name, "blobs/sha256/"); ok && fmt.Sprintf("%x", sum.Sum(nil)) != hex {
			t.Errorf("%s: content's sha256 is %x", hdr.Name, sum.Sum(nil))
		}
		img.files[hdr.Name] = out
	}

	var layout struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	img.readJSON(t, "oci-layout", &layout)
	if layout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout: imageLayoutVersion %q", layout.ImageLayoutVersion)
	}
	var index ociIndex
	img.readJSON(t, "index.json", &index)
	if index.SchemaVersion != 2 || index.MediaType != "application/vnd.oci.image.index.v1+json" || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %+v; want one manifest in an OCI index", index)
	}
	m := index.Manifests[0]
	wantName := defaultSpec.Repository + ":imagetest"
	if m.Annotations["org.opencontainers.image.ref.name"] != "imagetest" || m.Annotations["io.containerd.image.name"] != wantName {
		t.Errorf("index.json annotations %v; want ref.name imagetest, io.containerd.image.name %s", m.Annotations, wantName)
	}
	img.manifestDigest = img.blob(t, m, "application/vnd.oci.image.manifest.v1+json", &img.manifest)
	if img.manifest.SchemaVersion != 2 || img.manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest: schemaVersion %d mediaType %q", img.manifest.SchemaVersion, img.manifest.MediaType)
	}
	configDigest := img.blob(t, img.manifest.Config, "application/vnd.oci.image.config.v1+json", &img.config)
	referenced := map[string]bool{"oci-layout": true, "index.json": true, "manifest.json": true,
		"blobs/sha256/" + img.manifestDigest: true, "blobs/sha256/" + configDigest: true}
	var layerPaths []string
	for _, l := range img.manifest.Layers {
		p := img.blob(t, l, "application/vnd.oci.image.layer.v1.tar+gzip", nil)
		layerPaths = append(layerPaths, "blobs/sha256/"+p)
		img.layerFiles = append(img.layerFiles, img.files["blobs/sha256/"+p])
		referenced["blobs/sha256/"+p] = true
	}
	for name := range img.files {
		if !referenced[name] {
			t.Errorf("%s holds %s, which nothing references", archive, name)
		}
	}

	var save []dockerSaveEntry
	img.readJSON(t, "manifest.json", &save)
	want := dockerSaveEntry{Config: "blobs/sha256/" + configDigest, RepoTags: []string{wantName}, Layers: layerPaths}
	if len(save) != 1 || save[0].Config != want.Config || !slices.Equal(save[0].RepoTags, want.RepoTags) || !slices.Equal(save[0].Layers, want.Layers) {
		t.Errorf("manifest.json %+v; want [%+v]", save, want)
	}
	return img
}

func (img archiveImage) readJSON(t *testing.T, name string, v any) {
	t.Helper()
	p, ok := img.files[name]
	if !ok {
		t.Fatalf("the archive has no %s", name)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// blob checks that the blob d names is in the archive with d's size and media type, decodes
// it into v (unless nil) and returns its hex digest.
func (img archiveImage) blob(t *testing.T, d descriptor, mediaType string, v any) string {
	t.Helper()
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("descriptor %+v: not a sha256 digest", d)
	}
	name := "blobs/sha256/" + hexDigest
	p, ok := img.files[name]
	if !ok {
		t.Fatalf("the archive lacks %s", name)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != d.Size {
		t.Errorf("%s: size %v, descriptor says %d (%v)", name, st.Size(), d.Size, err)
	}
	if d.MediaType != mediaType {
		t.Errorf("%s: media type %q, want %q", name, d.MediaType, mediaType)
	}
	if v != nil {
		img.readJSON(t, name, v)
	}
	return hexDigest
}

// checkConfig: the config says what the Dockerfile says, and labels the build.
func checkConfig(t *testing.T, img archiveImage) {
	t.Helper()
	c := img.config
	created := time.Unix(testEpoch, 0).UTC().Format(time.RFC3339)
	if c.OS != "linux" || c.Architecture != "amd64" && c.Architecture != "arm64" || c.Created != created {
		t.Errorf("config: os %q architecture %q created %q (want linux, %s)", c.OS, c.Architecture, c.Created, created)
	}
	if !slices.Equal(c.Config.Entrypoint, defaultSpec.Entrypoint) || c.Config.Cmd != nil {
		t.Errorf("config: Entrypoint %q Cmd %q; want %q and no Cmd", c.Config.Entrypoint, c.Config.Cmd, defaultSpec.Entrypoint)
	}
	if c.Config.User != "65532:65532" {
		t.Errorf("config: User %q, want 65532:65532 (the Dockerfile's UID:GID)", c.Config.User)
	}
	if !slices.Equal(c.Config.Env, []string{"PATH=" + defaultSpec.Path}) {
		t.Errorf("config: Env %q", c.Config.Env)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  "imagetest",
		"org.opencontainers.image.revision": "0123abc",
		"org.opencontainers.image.source":   "https://github.com/krsync/krsync",
		"org.opencontainers.image.created":  created,
	} {
		if c.Config.Labels[k] != v {
			t.Errorf("config: label %s = %q, want %q", k, c.Config.Labels[k], v)
		}
	}
	if c.RootFS.Type != "layers" || len(c.RootFS.DiffIDs) != 2 || len(img.layerFiles) != 2 || len(c.History) != 2 {
		t.Fatalf("config: rootfs %+v, %d history entries, %d layers; want 2 layers: Debian, krsync", c.RootFS, len(c.History), len(img.layerFiles))
	}
	for i, layer := range img.layerFiles {
		if got := "sha256:" + gunzipSHA256(t, layer); got != c.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: uncompressed sha256 %s, config's diff_id %s", i, got, c.RootFS.DiffIDs[i])
		}
	}
}

func gunzipSHA256(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, zr); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// extractLayers unpacks the layers in order with GNU tar, as root, keeping owners and modes:
// what a runtime's snapshotter does for layers without whiteouts (mkimage writes none).
func extractLayers(t *testing.T, tarProg string, img archiveImage, root string) {
	t.Helper()
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, layer := range img.layerFiles {
		out, err := exec.Command(tarProg, "-xzf", layer, "-C", root, "--numeric-owner", "--same-permissions", "--same-owner").CombinedOutput()
		if err != nil {
			t.Fatalf("extract layer %d: %v\n%s", i, err, out)
		}
	}
}

// checkRootfs: the root file system holds rsync, the CA certificates, the binary and the user,
// and neither apt nor device nodes.
func checkRootfs(t *testing.T, root string) {
	t.Helper()
	st, err := os.Stat(filepath.Join(root, defaultSpec.BinaryPath))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o755 || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("%s: mode %v owner %d:%d, want 0755 root:root", defaultSpec.BinaryPath, st.Mode(), sys.Uid, sys.Gid)
	}
	for _, p := range []string{"/usr/bin/rsync", "/etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("the image lacks %s: %v", p, err)
		}
	}
	for _, p := range []string{"/usr/bin/apt-get", "/dev/null"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("the image holds %s", p)
		}
	}
	for file, line := range map[string]string{"/etc/passwd": defaultSpec.passwdLine(), "/etc/group": defaultSpec.groupLine()} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || !slices.Contains(strings.Split(string(b), "\n"), line) {
			t.Errorf("%s lacks %q (%v)", file, line, err)
		}
	}
}

// runInImage runs the image's entrypoint inside its root file system as a runtime would:
// chroot, the config's user (setgroups, setgid, setuid after the chroot, as setpriv or runc
// do), the config's Env and no other, /dev/null provided (a runtime mounts /dev). It prints
// the version, then copies a generated tree with `krsync local`, which runs the image's rsync.
func runInImage(t *testing.T, img archiveImage, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	uid, gid := parseUser(t, img.config.Config.User)
	entry := resolveInImage(t, root, img.config.Config.Entrypoint[0], img.config.Config.Env)
	run := func(args ...string) string {
		t.Helper()
		argv := append(slices.Clone(img.config.Config.Entrypoint), args...)
		cmd := &exec.Cmd{Path: entry, Args: argv, Env: img.config.Config.Env, Dir: "/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in the image, as %d:%d: %q: %v\n%s", uid, gid, argv, err, out)
		}
		return string(out)
	}
	if out := run("version"); strings.TrimSpace(out) != "krsync "+testbin.Version {
		t.Errorf("krsync version in the image: %q", out)
	}

	// A plain tree of the image's user, readable by it: without root, rsync keeps owners only
	// when they are its own, and reads only what its user may (the manifests run as root).
	data := filepath.Join(root, "data")
	src := filepath.Join(data, "src")
	seed := uint64(time.Now().UnixNano())
	if _, err := treegen.Generate(src, treegen.Spec{Seed: seed, Files: 300}); err != nil {
		t.Fatalf("treegen seed %d: %v", seed, err)
	}
	chownTree(t, data, int(uid), int(gid))
	out := run("local", "--source", "/data/src", "--dest", "/data/dst", "--workers", "2",
		"--state-dir", "/data/state", "--progress", "never", "--log-format", "json")
	if err := treecmp.Equal(src, filepath.Join(data, "dst"), treecmp.Options{}); err != nil {
		t.Fatalf("seed %d: krsync local in the image: %v\n%s", seed, err, out)
	}
}

func parseUser(t *testing.T, user string) (uint32, uint32) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("config User %q is not UID:GID", user)
	}
	return uint32(uid), uint32(gid)
}

// resolveInImage finds name through the PATH of env inside root, as execvp would after the
// chroot, and returns the path inside the image.
func resolveInImage(t *testing.T, root, name string, env []string) string {
	t.Helper()
	if path.IsAbs(name) {
		return name
	}
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range strings.Split(p, ":") {
				if st, err := os.Stat(filepath.Join(root, dir, name)); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
					return path.Join(dir, name)
				}
			}
		}
	}
	t.Fatalf("%s is not on the image's PATH (env %q)", name, env)
	return ""
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkWithSkopeo reads the archive through both of its views, as an operator copying it to a
// registry would: oci-archive: (index.json) and docker-archive: (manifest.json, whose layers
// skopeo decompresses and checks against the config's diff_ids).
func checkWithSkopeo(t *testing.T, archive string, img archiveImage) {
	t.Helper()
	skopeo := testbin.Program(t, "skopeo")
	for _, src := range []string{"oci-archive:" + archive, "docker-archive:" + archive} {
		dst := t.TempDir()
		if out, err := exec.Command(skopeo, "copy", "--quiet", src, "dir:"+dst).CombinedOutput(); err != nil {
			t.Errorf("skopeo copy %s: %v\n%s", src, err, out)
		}
	}
	out, err := exec.Command(skopeo, "inspect", "--raw", "oci-archive:"+archive).Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(out)); got != img.manifestDigest {
		t.Errorf("skopeo reads manifest sha256:%s, index.json names sha256:%s", got, img.manifestDigest)
	}
}

// explainDifference fails the test when two builds of the same inputs differ, unless Debian's
// mirror served other packages the second time (a mirror push between the builds), which it
// reports as a skip (a failure under CI=true).
func explainDifference(t *testing.T, a, b archiveImage, r [2]buildResult) {
	t.Helper()
	pa, pb := dpkgVersions(t, a.layerFiles[0]), dpkgVersions(t, b.layerFiles[0])
	if !slices.Equal(pa, pb) {
		testbin.SkipOrFail(t, fmt.Sprintf("the two builds got other Debian packages (a mirror update between them?): %q vs %q", pa, pb))
	}
	t.Fatalf("same inputs, different images: %+v vs %+v; layer diff_ids %q vs %q", r[0], r[1], a.config.RootFS.DiffIDs, b.config.RootFS.DiffIDs)
}

// dpkgVersions lists package=version from a layer's /var/lib/dpkg/status.
func dpkgVersions(t *testing.T, layer string) []string {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no var/lib/dpkg/status: %v", layer, err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != "var/lib/dpkg/status" {
			continue
		}
		var pkgs []string
		var pkg string
		sc := bufio.NewScanner(tr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Package: "); ok {
				pkg = v
			} else if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
				pkgs = append(pkgs, pkg+"="+v)
			}
		}
		slices.Sort(pkgs)
		return pkgs
	}
}
