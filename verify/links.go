package verify

import (
	"sort"
	"sync"
)

// linkName is one name whose inode has more than one link on at least one side.
type linkName struct {
	path     string
	a, b     inode
	inA, inB bool // the name counts in that side's grouping (a non-directory with nlink > 1)
	compared bool // the name has the same type on both sides, so its grouping is compared
}

// linkTable collects the multiply-linked names of the whole walk; names with one link
// are never stored, so the table grows with the hard links of the trees only.
type linkTable struct {
	mu    sync.Mutex
	names []linkName
}

func (t *linkTable) add(n linkName) {
	t.mu.Lock()
	t.names = append(t.names, n)
	t.mu.Unlock()
}

// group is the names of one inode within one tree: how many, and the smallest.
type group struct {
	first string
	n     int
}

// differences compares, for every name present on both sides, the group of names sharing
// its inode in the source with the group in the destination, each named by its smallest
// name ("" when the name is the inode's only one in its tree). Equal names for every path
// mean equal groupings: a name linked differently changes the smallest name of its group on
// one side or the other.
func (t *linkTable) differences() []Difference {
	groupsA, groupsB := map[inode]*group{}, map[inode]*group{}
	join := func(groups map[inode]*group, key inode, path string) {
		g := groups[key]
		if g == nil {
			groups[key] = &group{first: path, n: 1}
			return
		}
		g.n++
		g.first = min(g.first, path)
	}
	for _, n := range t.names {
		if n.inA {
			join(groupsA, n.a, n.path)
		}
		if n.inB {
			join(groupsB, n.b, n.path)
		}
	}
	name := func(groups map[inode]*group, in bool, key inode) string {
		if !in || groups[key].n < 2 {
			return ""
		}
		return groups[key].first
	}
	var diffs []Difference
	for _, n := range t.names {
		if !n.compared {
			continue
		}
		ga, gb := name(groupsA, n.inA, n.a), name(groupsB, n.inB, n.b)
		if ga != gb {
			diffs = append(diffs, Difference{Path: n.path, Kind: HardLink, Source: linkGroupName(ga), Dest: linkGroupName(gb)})
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs
}
