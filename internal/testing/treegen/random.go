package treegen

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RandomSpec describes a random tree for property tests. Unlike Spec's hostile/ corner, which
// keeps its odd names in subdirectories, a random tree puts hostile names, odd modes, hard
// links, symlinks, FIFOs and empty directories at every depth, the top level included, in an
// order that lands them first, last and in the middle of partitions.
type RandomSpec struct {
	// Seed decides everything; print it when a test fails.
	Seed uint64
	// Entries is how many entries (files, directories, links, FIFOs) the tree gets (default 300).
	Entries int
	// MaxDepth bounds the depth of directories below the root (default 6).
	MaxDepth int
}

// Names every random tree holds, whatever the seed: the top-level names rsync's --files-from
// reads as comments ("#", ";"), a top-level directory so named with an entry inside, and
// names that look like options, at the top and at the deepest level.
var randomFixed = []struct {
	rel string
	dir bool
}{
	{"#top", false}, {";semi", false}, {"#dir", true}, {"#dir/inner", false},
	{"-e ssh", false}, {"--delete", true}, {"--delete/#x", false},
}

// Random writes a random tree under root, which must be empty or absent.
func Random(root string, spec RandomSpec) (Summary, error) {
	if spec.Entries <= 0 {
		spec.Entries = 300
	}
	if spec.MaxDepth <= 0 {
		spec.MaxDepth = 6
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Summary{}, fmt.Errorf("treegen: %w", err)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) > 0 {
		return Summary{}, fmt.Errorf("treegen: %s must be an empty directory (%v)", root, err)
	}
	g := &generator{root: root, spec: Spec{Seed: spec.Seed}, umaskClears644: umaskClears644()}
	rb := &randomBuilder{
		hostileBuilder: hostileBuilder{g: g, r: g.rng(streamRandom), stream: streamRandom << 32, isRoot: os.Geteuid() == 0, skips: map[string]bool{}},
		spec:           spec,
		dirs:           []string{"."},
		names:          map[string]bool{},
	}
	if err := rb.build(); err != nil {
		return g.sum, fmt.Errorf("treegen: random tree (seed %d): %w", spec.Seed, err)
	}
	for note := range rb.skips {
		g.sum.Notes = append(g.sum.Notes, note)
	}
	if err := g.finishDirs(); err != nil {
		return g.sum, fmt.Errorf("treegen: directory times: %w", err)
	}
	return g.sum, nil
}

// streamRandom keeps the random tree's stream apart from the other generators'.
const streamRandom = 0x72616e64 // "rand"

type randomBuilder struct {
	hostileBuilder
	spec  RandomSpec
	dirs  []string // every directory, "." first
	files []string // regular files, for hard links
	names map[string]bool
}

var (
	randomFileModes = []os.FileMode{0o644, 0o600, 0o755, 0o444, 0o640, 0, 0o777, os.ModeSetuid | 0o755, os.ModeSetgid | 0o750, os.ModeSticky | 0o644}
	randomDirModes  = []os.FileMode{0o755, 0o700, 0o555, 0o711, os.ModeSticky | 0o777, os.ModeSetgid | 0o775, 0o500}
	randomOwners    = []int{-1, 0, 1, 1000, 65534, 4242}
)

func (b *randomBuilder) build() error {
	for _, f := range randomFixed {
		if err := b.add(f.rel, f.dir); err != nil {
			return err
		}
	}
	for i := len(randomFixed); i < b.spec.Entries; i++ {
		parent := b.dirs[b.r.IntN(len(b.dirs))]
		if err := b.randomEntry(parent, i); err != nil {
			return err
		}
	}
	// The deepest directory gets comment-like and option-like names too.
	deepest := "."
	for _, d := range b.dirs {
		if level(d) > level(deepest) {
			deepest = d
		}
	}
	for _, name := range []string{"#deep", ";deep", "-deep"} {
		if err := b.add(path.Join(deepest, name), false); err != nil {
			return err
		}
	}
	return nil
}

// add creates a fixed entry: a directory or a small file with random metadata.
func (b *randomBuilder) add(rel string, dir bool) error {
	b.names[rel] = true
	if dir {
		return b.mkdir(rel)
	}
	return b.file(rel, b.small(), b.fileMode(), b.owner(), b.owner())
}

// randomEntry adds one entry of a random kind under parent.
func (b *randomBuilder) randomEntry(parent string, i int) error {
	rel := path.Join(parent, b.name(parent, i))
	b.names[rel] = true
	switch k := b.r.IntN(100); {
	case k < 45:
		if err := b.file(rel, b.small(), b.fileMode(), b.owner(), b.owner()); err != nil {
			return err
		}
		b.files = append(b.files, rel)
	case k < 65:
		if level(parent)+1 > b.spec.MaxDepth {
			return b.file(rel, 0, 0o644, -1, -1)
		}
		return b.mkdir(rel)
	case k < 77:
		return b.symlink(rel, b.linkTarget(parent), b.owner(), b.owner())
	case k < 90 && len(b.files) > 0:
		orig := b.files[b.r.IntN(len(b.files))]
		if err := os.Link(b.path(orig), b.path(rel)); err != nil {
			return err
		}
		b.g.sum.Hardlink++
	case k < 94:
		if err := unix.Mknod(b.path(rel), unix.S_IFIFO|0o644, 0); err != nil {
			return fmt.Errorf("mkfifo %q: %w", rel, err)
		}
		b.g.sum.Specials++
		return b.meta(b.path(rel), b.fileMode(), b.owner(), b.owner(), false)
	default:
		return b.file(rel, 0, b.fileMode(), -1, -1)
	}
	return nil
}

func (b *randomBuilder) mkdir(rel string) error {
	if err := b.dir(rel, randomDirModes[b.r.IntN(len(randomDirModes))], b.owner(), b.owner()); err != nil {
		return err
	}
	b.dirs = append(b.dirs, rel)
	return nil
}

// name picks a name not yet used in parent: a hostile one about half of the time.
func (b *randomBuilder) name(parent string, i int) string {
	hostile := hostileNames()
	name := "n" + strconv.Itoa(i)
	if b.r.IntN(2) == 0 {
		name = hostile[b.r.IntN(len(hostile))]
	}
	if b.names[path.Join(parent, name)] || name == "." || name == ".." {
		suffix := "~" + strconv.Itoa(i)
		name = name[:min(len(name), 255-len(suffix))] + suffix
	}
	return name
}

// linkTarget is a symlink target: a sibling, an absolute path, a dangling or hostile one.
func (b *randomBuilder) linkTarget(parent string) string {
	switch b.r.IntN(5) {
	case 0:
		return "/etc/hostname"
	case 1:
		return "does-not-exist/" + strconv.Itoa(b.r.IntN(1000))
	case 2:
		return strings.Repeat("../", level(parent)+1) + "outside"
	case 3:
		hostile := hostileNames()
		return hostile[b.r.IntN(len(hostile))]
	default:
		if len(b.files) == 0 {
			return "."
		}
		return strings.Repeat("../", level(parent)) + b.files[b.r.IntN(len(b.files))]
	}
}

// level is how deep rel lies below the root: 0 for the root ".", 1 for a top-level name.
func level(rel string) int {
	if rel == "." {
		return 0
	}
	return depth(rel) + 1
}

func (b *randomBuilder) fileMode() os.FileMode {
	return randomFileModes[b.r.IntN(len(randomFileModes))]
}

func (b *randomBuilder) owner() int {
	return randomOwners[b.r.IntN(len(randomOwners))]
}
