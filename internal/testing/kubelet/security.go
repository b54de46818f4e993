package kubelet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/internal/testing/kubelet/sandbox"
)

// defaultCapabilities are what containerd and CRI-O give a container whose securityContext
// drops nothing (containerd's oci.DefaultCapabilities, Docker's default set).
var defaultCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}

// identity is who a container's process runs as, and with what.
type identity struct {
	uid, gid     uint32
	groups       []uint32
	home         string
	capabilities []string
	noNewPrivs   bool
	readOnlyRoot bool
}

// containerIdentity applies the Pod's and the container's securityContext (the container's
// fields win) to the image's user, as the kubelet and containerd do together:
//   - the user is runAsUser, else the image's; runAsNonRoot refuses uid 0 (the kubelet's check);
//   - the group is runAsGroup, else the image's when the image's user is used, else the user's
//     group in the image's /etc/passwd, else 0;
//   - supplementary groups are the user's memberships in the image's /etc/group, fsGroup and
//     supplementalGroups (fsGroup does not change the volumes' owners here);
//   - capabilities: see capabilities; no_new_privs iff allowPrivilegeEscalation is false.
func containerIdentity(img *Image, pod *corev1.Pod, c *corev1.Container) (identity, error) {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	users, err := readPasswd(filepath.Join(img.Rootfs, "etc/passwd"))
	if err != nil {
		return identity{}, err
	}
	imgUID, imgGID, err := parseImageUser(img.User, users)
	if err != nil {
		return identity{}, err
	}
	id := identity{uid: imgUID, gid: imgGID, home: "/"}
	runAsUser, runAsGroup, nonRoot := first(sc.RunAsUser, psc.RunAsUser), first(sc.RunAsGroup, psc.RunAsGroup), first(sc.RunAsNonRoot, psc.RunAsNonRoot)
	if runAsUser != nil {
		id.uid, id.gid = uint32(*runAsUser), 0
		if u, ok := users.byUID(id.uid); ok {
			id.gid = u.gid
		}
	}
	if runAsGroup != nil {
		id.gid = uint32(*runAsGroup)
	}
	if nonRoot != nil && *nonRoot && id.uid == 0 {
		return identity{}, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pod.Name, c.Name)
	}
	if u, ok := users.byUID(id.uid); ok {
		id.home = u.home
		if id.groups, err = memberships(filepath.Join(img.Rootfs, "etc/group"), u.name); err != nil {
			return identity{}, err
		}
	}
	for _, g := range psc.SupplementalGroups {
		id.groups = append(id.groups, uint32(g))
	}
	if psc.FSGroup != nil {
		id.groups = append(id.groups, uint32(*psc.FSGroup))
	}
	id.groups = uniqueSorted(id.groups)
	if id.capabilities, err = capabilities(sc); err != nil {
		return identity{}, err
	}
	id.noNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	id.readOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	return id, nil
}

// capabilities is containerd's rule: privileged has all; otherwise the default set, add: [ALL]
// makes it all and drop: [ALL] empty, then the single names are added, then dropped.
func capabilities(sc *corev1.SecurityContext) ([]string, error) {
	if sc.Privileged != nil && *sc.Privileged {
		return sandbox.AllCapabilities(), nil
	}
	set := map[string]bool{}
	for _, c := range defaultCapabilities {
		set[c] = true
	}
	var add, drop []corev1.Capability
	if sc.Capabilities != nil {
		add, drop = sc.Capabilities.Add, sc.Capabilities.Drop
	}
	for _, c := range add {
		if strings.EqualFold(string(c), "ALL") {
			for _, n := range sandbox.AllCapabilities() {
				set[n] = true
			}
		}
	}
	for _, c := range drop {
		if strings.EqualFold(string(c), "ALL") {
			set = map[string]bool{}
		}
	}
	change := func(list []corev1.Capability, keep bool) error {
		for _, c := range list {
			if strings.EqualFold(string(c), "ALL") {
				continue
			}
			name := strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
			if _, ok := sandbox.CapabilityNumber(name); !ok {
				return fmt.Errorf("unknown capability %q", c)
			}
			set[name] = keep
		}
		return nil
	}
	if err := change(add, true); err != nil {
		return nil, err
	}
	if err := change(drop, false); err != nil {
		return nil, err
	}
	var out []string
	for n, keep := range set {
		if keep {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func first[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func uniqueSorted(ids []uint32) []uint32 {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []uint32
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// passwdEntry is one line of the image's /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type passwd []passwdEntry

func (p passwd) byUID(uid uint32) (passwdEntry, bool) {
	for _, e := range p {
		if e.uid == uid {
			return e, true
		}
	}
	return passwdEntry{}, false
}

func (p passwd) byName(name string) (passwdEntry, bool) {
	for _, e := range p {
		if e.name == name {
			return e, true
		}
	}
	return passwdEntry{}, false
}

// readPasswd reads an /etc/passwd; a missing file is an empty one, as for a runtime.
func readPasswd(path string) (passwd, error) {
	var users passwd
	err := eachLine(path, func(fields []string) {
		if len(fields) < 6 {
			return
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 == nil && err2 == nil {
			users = append(users, passwdEntry{name: fields[0], uid: uint32(uid), gid: uint32(gid), home: fields[5]})
		}
	})
	return users, err
}

// memberships lists the groups of /etc/group that name user as a member.
func memberships(path, user string) ([]uint32, error) {
	var gids []uint32
	err := eachLine(path, func(fields []string) {
		if len(fields) < 4 {
			return
		}
		for _, m := range strings.Split(fields[3], ",") {
			if m == user {
				if gid, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
					gids = append(gids, uint32(gid))
				}
			}
		}
	})
	return gids, err
}

func eachLine(path string, f func(fields []string)) error {
	file, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f(strings.Split(line, ":"))
	}
	return sc.Err()
}

// parseImageUser reads an image config's User: "", "uid", "uid:gid", "name" or "name:gid"
// (a group name is not needed by any image here).
func parseImageUser(user string, users passwd) (uint32, uint32, error) {
	if user == "" {
		return 0, 0, nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	var uid, gid uint32
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid = uint32(n)
		if u, ok := users.byUID(uid); ok {
			gid = u.gid
		}
	} else {
		u, ok := users.byName(name)
		if !ok {
			return 0, 0, fmt.Errorf("image user %q: no such user in the image's /etc/passwd", name)
		}
		uid, gid = u.uid, u.gid
	}
	if hasGroup {
		n, err := strconv.ParseUint(group, 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("image user %q: the group must be numeric", user)
		}
		gid = uint32(n)
	}
	return uid, gid, nil
}
