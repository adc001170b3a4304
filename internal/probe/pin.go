package probe

import (
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// preparePinDir checks a probe's pinning against its object, marks the
// pinned maps in the spec and makes the probe's folder under the pin root.
func (m *Manager) preparePinDir(name string, spec *ebpf.CollectionSpec, pin *Pinning) (string, error) {
	for _, mn := range pin.Maps {
		ms, ok := spec.Maps[mn]
		if !ok {
			return "", errorf(KindInvalid, "pin: the object has no map %q (it has: %s)", mn, names(spec.Maps))
		}
		ms.Pinning = ebpf.PinByName
	}
	root := m.opts.PinRoot
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", errorf(KindInternal, "pin root %s: %v", root, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		return "", errorf(KindInternal, "pin root %s is not on a bpf filesystem: mount one (mount -t bpf bpf /sys/fs/bpf)", root)
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", errorf(KindInternal, "pin folder %s: %v", dir, err)
	}
	return dir, nil
}

// existingPins reports which of the pinned maps are already pinned in dir.
func existingPins(dir string, pin *Pinning) map[string]bool {
	out := map[string]bool{}
	if dir == "" || pin == nil {
		return out
	}
	for _, mn := range pin.Maps {
		if _, err := os.Stat(filepath.Join(dir, mn)); err == nil {
			out[mn] = true
		}
	}
	return out
}

// PinDir is the bpffs folder where probe NAME keeps its pins.
func (m *Manager) PinDir(name string) string { return filepath.Join(m.opts.PinRoot, name) }
