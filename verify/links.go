package verify

import (
	"sort"
	"sync"
)

// Inode identifies an inode within one tree: its number, and its device when that is not
// the device of the tree's root (0 when it is). Naming the device relative to the root lets
// records of one tree made on different machines meet (two pods mounting the same volume
// see different st_dev numbers for it, but the same inode numbers).
type Inode struct {
	Dev uint64 // 0: the root's device
	Ino uint64
}

// LinkName is one name whose inode has more than one link on at least one side: what the
// grouping of hard links across the whole tree is decided from (HardLinkDifferences).
type LinkName struct {
	Path string
	// Source and Dest are the name's inode on each side, when InSource and InDest say that
	// the name counts in that side's grouping (a non-directory with more than one link).
	Source, Dest     Inode
	InSource, InDest bool
	// Compared: the name has the same type on both sides, so its grouping is compared.
	Compared bool
}

// linkTable collects the multiply-linked names of a walk; names with one link are never
// stored, so the table grows with the hard links of the trees only.
type linkTable struct {
	mu    sync.Mutex
	names []LinkName
}

func (t *linkTable) add(n LinkName) {
	t.mu.Lock()
	t.names = append(t.names, n)
	t.mu.Unlock()
}

// group is the names of one inode within one tree: how many, and the smallest.
type group struct {
	first string
	n     int
}

// HardLinkDifferences compares, for every name present on both sides, the group of names
// sharing its inode in the source with the group in the destination, each named by its
// smallest name ("" when the name is the inode's only one in its tree). Equal names for
// every path mean equal groupings: a name linked differently changes the smallest name of
// its group on one side or the other. names must hold every multiply-linked name of both
// trees once (Run collects them itself; callers of Dirs gather them from every call); the
// differences come sorted by path.
func HardLinkDifferences(names []LinkName) []Difference {
	groupsA, groupsB := map[Inode]*group{}, map[Inode]*group{}
	join := func(groups map[Inode]*group, key Inode, path string) {
		g := groups[key]
		if g == nil {
			groups[key] = &group{first: path, n: 1}
			return
		}
		g.n++
		g.first = min(g.first, path)
	}
	for _, n := range names {
		if n.InSource {
			join(groupsA, n.Source, n.Path)
		}
		if n.InDest {
			join(groupsB, n.Dest, n.Path)
		}
	}
	name := func(groups map[Inode]*group, in bool, key Inode) string {
		if !in || groups[key].n < 2 {
			return ""
		}
		return groups[key].first
	}
	var diffs []Difference
	for _, n := range names {
		if !n.Compared {
			continue
		}
		ga, gb := name(groupsA, n.InSource, n.Source), name(groupsB, n.InDest, n.Dest)
		if ga != gb {
			diffs = append(diffs, Difference{Path: n.Path, Kind: HardLink, Source: linkGroupName(ga), Dest: linkGroupName(gb)})
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs
}
